"""Adapters: the one wrapper for each external tool (docker, the registry's v2 API, HTTP,
external commands, executables installed beside Python)."""
