'''Goal-image-conditioned policy node: CEM over a learned Q-function, arm commands through MoveIt

Servo or moveit_py, with safety limits.
'''
