from setuptools import find_packages, setup

PACKAGE = 'am_dataset_recorder'

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
        'Records camera, joint-state and command topics into one rosbag2 (MCAP) bag per '
        'episode.'
    ),
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'recorder = am_dataset_recorder.recorder_node:main',
        ],
    },
)
