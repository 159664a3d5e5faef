'''Actionable Models: goal-conditioned offline Q-learning from rosbag2 episodes, its baselines,

datasets, training and evaluation. Never imports rclpy.
'''
