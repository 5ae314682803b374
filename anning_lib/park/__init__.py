"""The park's asset model (enterprises, buildings, devices, points) and its loader."""

from anning_lib.park.catalogue import Carrier, Catalogue, Quantity, load_catalogue
from anning_lib.park.loader import load_park, parse_park
from anning_lib.park.schema import Building, Device, Enterprise, Park, Point, point_tag

__all__ = [
    "Building", "Carrier", "Catalogue", "Device", "Enterprise", "Park", "Point", "Quantity",
    "load_catalogue", "load_park", "parse_park", "point_tag",
]
