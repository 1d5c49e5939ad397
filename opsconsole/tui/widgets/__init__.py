"""Widgets of the opsconsole TUI (rendering only: data comes in as snapshot dataclasses)."""
