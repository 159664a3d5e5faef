'''Shared test fixtures: real ROS 2 nodes in subprocesses and an in-test rclpy node.'''
