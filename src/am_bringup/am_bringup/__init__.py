'''Launch files, parameter files and the runner that start the am stack on a simulated or real

robot.
'''
