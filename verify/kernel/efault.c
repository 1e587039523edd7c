// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * efault DEVICE: write to DEVICE from an unmapped user address and print
 * what write(2) said. A kernel function that copies from that address must
 * fault and be rescued by its exception-table entry (EFAULT, "Bad address");
 * without the entry the kernel oopses. Built statically for the initramfs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	/* volatile: the compiler must not see (and warn about) the bad pointer. */
	const void *volatile unmapped = (const void *)16;
	int fd;
	ssize_t n;

	if (argc != 2) {
		fprintf(stderr, "usage: efault DEVICE\n");
		return 2;
	}
	fd = open(argv[1], O_WRONLY);
	if (fd < 0) {
		perror(argv[1]);
		return 2;
	}
	n = write(fd, unmapped, 8);
	printf("%s\n", n < 0 ? strerror(errno) : "written");
	return 0;
}
