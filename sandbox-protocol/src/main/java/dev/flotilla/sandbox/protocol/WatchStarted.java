package dev.flotilla.sandbox.protocol;

/**
 * The first element of a directory watch's stream: the watch runs, and every change from now on
 * follows as an {@link FsChange}.
 *
 * @param path the watched directory, absolute inside the sandbox
 * @param watchedDirs directories the guest watches for it (1 unless recursive)
 * @param partial recursive: the tree had more directories than the guest watches for one watch
 */
public record WatchStarted(String path, int watchedDirs, boolean partial) implements FsValue {}
