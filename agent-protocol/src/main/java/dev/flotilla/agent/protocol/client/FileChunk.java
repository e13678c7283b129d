package dev.flotilla.agent.protocol.client;

/** One chunk of a guest file; {@code eof} when no bytes follow it. */
public record FileChunk(byte[] data, boolean eof, long fileSize) {}
