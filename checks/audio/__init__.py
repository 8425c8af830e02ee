"""audio.* checks: PortAudio backend, devices, microphone and speaker, OS and browser permission."""
