from setuptools import find_packages, setup

PACKAGE = 'am_learning'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='am stack developers',
    maintainer_email='am-stack@example.com',
    description=(
        'Actionable Models: goal-conditioned offline Q-learning from rosbag2 episodes, '
        'its baselines, datasets, training and evaluation. Never imports rclpy.'
    ),
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'am-dataset = am_learning.cli_dataset:main',
            'am-train = am_learning.cli_train:main',
            'am-eval = am_learning.cli_eval:main',
        ],
    },
)
