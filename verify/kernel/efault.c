// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * efault [read|write] DEVICE: read from DEVICE into, or write to it from, an
 * unmapped user address, and print what the system call said. A kernel
 * function that touches that address must fault and be rescued by its
 * exception-table entry (EFAULT, "Bad address"); without the entry the
 * kernel oopses. Built statically for the test initramfs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	/* volatile: the compiler must not see (and warn about) the bad pointer. */
	void *volatile unmapped = (void *)16;
	int reading, fd;
	ssize_t n;

	if (argc != 3 || (strcmp(argv[1], "read") && strcmp(argv[1], "write"))) {
		fprintf(stderr, "usage: efault read|write DEVICE\n");
		return 2;
	}
	reading = !strcmp(argv[1], "read");
	fd = open(argv[2], reading ? O_RDONLY : O_WRONLY);
	if (fd < 0) {
		perror(argv[2]);
		return 2;
	}
	n = reading ? read(fd, unmapped, 8) : write(fd, unmapped, 8);
	printf("%s\n", n < 0 ? strerror(errno) : "done");
	return 0;
}
