"""gallery"""
