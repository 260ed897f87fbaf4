"""bireco.data"""
