from setuptools import find_packages, setup

PACKAGE = 'am_policy_node'

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
        'Goal-image-conditioned policy node: CEM over a learned Q-function, arm commands '
        'through MoveIt Servo or moveit_py, with safety limits.'
    ),
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'policy = am_policy_node.policy_node:main',
            'am-goal = am_policy_node.goal_tool:main',
        ],
    },
)
