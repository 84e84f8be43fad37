"""A counterflow centrifuge / cell processor served over Modbus TCP (pymodbus)."""
