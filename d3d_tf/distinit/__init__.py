"""DistInit: frozen image teachers label the frames of unlabeled videos; video students learn
from them (task, stored targets, representation pictures, the entropy figure).
"""
