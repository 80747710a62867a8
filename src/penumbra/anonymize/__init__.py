"""Removing person-related information from media before it is stored or processed.

Faces in images and video, voices, file metadata, and re-identifying combinations in tables.
Independent of the synthesis pipeline; every command reports how well it worked.
"""
