"""bireco.lit"""
