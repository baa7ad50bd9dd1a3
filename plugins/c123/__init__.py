"""The c123 SMS gateway: wire client, output, reply and report polling, simulator."""
