"""The Bash environment: file and permission tasks run as real shell commands in a sandbox."""
