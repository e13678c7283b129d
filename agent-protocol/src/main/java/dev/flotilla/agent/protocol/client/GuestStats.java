package dev.flotilla.agent.protocol.client;

/** Resource usage as the guest sees it (see StatsResponse in agent.proto). */
public record GuestStats(long memoryUsedBytes, long memoryTotalBytes, long cpuTimeNanos, int processCount, long uptimeMillis) {}
