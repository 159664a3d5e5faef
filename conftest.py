'''Test settings for the whole tree.

Every ROS 2 process a test starts inherits this environment: DDS discovery stays on
loopback, and each test run gets its own ROS_DOMAIN_ID so concurrent runs never see
each other.
'''

import os
import random

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('MUJOCO_GL', 'egl')
os.environ.setdefault('PYOPENGL_PLATFORM', 'egl')
if 'AM_TEST_DOMAIN_ID' not in os.environ:
    # Domain ids 1..101 are valid on every platform; 0 is the shared default.
    os.environ['AM_TEST_DOMAIN_ID'] = str(random.SystemRandom().randint(1, 101))
os.environ['ROS_DOMAIN_ID'] = os.environ['AM_TEST_DOMAIN_ID']

pytest_plugins = ['am_testing.fixtures']
