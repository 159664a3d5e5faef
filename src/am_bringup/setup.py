from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'am_bringup'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.py')),
        ('share/' + PACKAGE + '/config', glob('config/*')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='am stack developers',
    maintainer_email='am-stack@example.com',
    description=(
        'Launch files, parameter files and the runner that start the am stack on a '
        'simulated or real robot.'
    ),
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'am-launch = am_bringup.runner:main',
            'am-demo = am_bringup.demo:main',
        ],
    },
)
