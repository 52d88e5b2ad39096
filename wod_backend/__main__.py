from wod_backend.cli import main

main()
