'''Records camera, joint-state and command topics into one rosbag2 (MCAP) bag per episode.'''
