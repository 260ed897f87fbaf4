"""bireco.eval"""
