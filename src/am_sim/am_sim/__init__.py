'''Simulated UR5e + Robotiq arm (OGBench manipulation scenes in MuJoCo) behind the same ROS

interfaces as a real arm with MoveIt Servo, and a scripted teleoperator.
'''
