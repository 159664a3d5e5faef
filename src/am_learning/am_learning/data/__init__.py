'''Datasets: rosbag2 episodes -> time-aligned frames -> a memory-mappable cache.'''
