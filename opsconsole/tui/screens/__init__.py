"""Screens of the opsconsole TUI; each is the base screen of one app mode."""
