// SPDX-License-Identifier: GPL-2.0-or-later
/* crc_step() loses its global scope; its code does not change. */
#define noinline	__attribute__((__noinline__))

noinline unsigned int crc_step(unsigned int crc, unsigned char b)
{
	int i;

	crc ^= b;
	for (i = 0; i < 8; i++)
		crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1));
	return crc;
}

unsigned int crc_buf(const unsigned char *p, unsigned long len)
{
	unsigned int crc = ~0u;

	while (len--)
		crc = crc_step(crc, *p++);
	return ~crc;
}
