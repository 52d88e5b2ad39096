"""System tests: root, real users and services (postfix, procmail, slapd, JupyterHub,
ansible-playbook, chromium)."""
