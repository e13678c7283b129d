package dev.flotilla.agent.protocol.client;

/** What the guest said of itself in the handshake (see GuestDetails in agent.proto). */
public record GuestInfo(
    String kernel,
    String hostname,
    String agentVersion,
    boolean pidNamespaceRoot,
    int protocolVersion,
    long agentPid,
    String virtualization,
    long bootTimeUnixMs) {}
