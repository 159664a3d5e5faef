from setuptools import find_packages, setup

PACKAGE = 'am_sim'

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
        'Simulated UR5e + Robotiq arm (OGBench manipulation scenes in MuJoCo) behind the '
        'same ROS interfaces as a real arm with MoveIt Servo, and a scripted '
        'teleoperator.'
    ),
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'sim_robot = am_sim.sim_robot:main',
            'scripted_teleop = am_sim.scripted_teleop:main',
            'generate = am_sim.generate:main',
            'goal_trials = am_sim.goal_trials:main',
        ],
    },
)
