"""bireco.losses"""
