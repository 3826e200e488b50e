"""Feature extraction: turns videos into per-frame feature sequences (sits above models and data).

  synthetic   features of the built-in synthetic videos, cached on disk in the 'features'
              source's layout (`synthetic_feature_lists`)
"""
