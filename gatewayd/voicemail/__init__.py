"""The 3103 voicemail secret-code service: code rules, hashing, store, policy and IVR engine."""
