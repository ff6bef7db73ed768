"""Task modules that benchmark worker subprocesses import (one per system measured)."""
