"""AVA action localization (D3D Sec. 5.5, Table 5): annotations, the keyframe pipeline, the
detector head, its task, frame-mAP and the export signature.
"""
