// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Everything below lives in shared sections (.sched.text, .rodata.str1.1,
 * .rodata, .data..read_mostly), so growth in one place moves the others.
 */
#define __sched		__attribute__((__section__(".sched.text")))
#define __read_mostly	__attribute__((__section__(".data..read_mostly")))
#define noinline	__attribute__((__noinline__))

extern int printk(const char *fmt, ...);

static int rq_weight __read_mostly = 1024;

static noinline __sched int rq_pick(int cpu)
{
	printk("rq_pick: cpu %d\n", cpu);
	return cpu * rq_weight;
}

__sched int rq_front(int cpu)
{
	return rq_pick(cpu) + 1;
}

__sched int rq_adjust(int load)
{
	if (load > 100)
		printk("rq_adjust: high load %d\n", load);
	return load / 2;
}

__sched int rq_back(int cpu, int mode)
{
	printk("rq_back: cpu %d mode %d\n", cpu, mode);
	switch (mode) {
	case 0: return rq_pick(cpu);
	case 1: return rq_pick(cpu + 1) * 3;
	case 2: return rq_weight;
	case 3: return cpu - 7;
	case 4: return rq_pick(cpu) ^ 0x55;
	case 5: return printk("rq_back: five\n");
	default: return -1;
	}
}
