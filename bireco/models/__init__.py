"""bireco.models"""
