'''ROS parameters from a frozen config dataclass: the field names are the parameter names.'''

from collections.abc import Mapping
from dataclasses import fields
from typing import TypeVar

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

ConfigT = TypeVar('ConfigT')


def declare_config(node: Node, config_type: type[ConfigT],
                   descriptions: Mapping[str, str]) -> ConfigT:
    '''Declare one parameter per field (the field's default, `descriptions[name]`) and build
    the config from the values the node was started with. Tuple fields travel as lists.'''
    defaults = config_type()
    values = {}
    for field in fields(config_type):
        default = getattr(defaults, field.name)
        as_tuple = isinstance(default, tuple)
        node.declare_parameter(field.name, list(default) if as_tuple else default,
                               ParameterDescriptor(description=descriptions[field.name]))
        value = node.get_parameter(field.name).value
        values[field.name] = tuple(value) if as_tuple else value
    return config_type(**values)
