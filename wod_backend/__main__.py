from wod_backend.cli.main import main

main()
