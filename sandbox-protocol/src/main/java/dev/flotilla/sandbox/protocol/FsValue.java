package dev.flotilla.sandbox.protocol;

/**
 * What the file system calls of a sandbox answer with: entries, listing pages and watch events.
 * They cross nodes in replies and StreamRefs (core-actors binds this interface to Kryo).
 */
public sealed interface FsValue permits FsEntry, DirPage, WatchStarted, FsChange {}
