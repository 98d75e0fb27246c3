"""The dashboard's research router (being built)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
