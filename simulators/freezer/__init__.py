"""A controlled-rate freezer served over Modbus TCP (pymodbus)."""
