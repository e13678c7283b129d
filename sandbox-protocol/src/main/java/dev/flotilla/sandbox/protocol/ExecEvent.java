package dev.flotilla.sandbox.protocol;

/**
 * What a running process tells its reader: output chunks, then exactly one {@link ExecExited}.
 * Crosses nodes inside StreamRefs (core-actors registers these types with Kryo).
 */
public sealed interface ExecEvent permits ExecOutput, ExecExited, ProcessOutput {}
