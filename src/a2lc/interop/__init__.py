"""Exchange with annotation tools: Label Studio tasks, CVAT masks, COCO panoptic."""
