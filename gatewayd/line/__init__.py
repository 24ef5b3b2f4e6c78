"""Line drivers: turn hardware (or the sim socket) into LineEvents."""
