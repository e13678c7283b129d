package dev.flotilla.persistence;

/**
 * Marker for everything Flotilla stores or sends between nodes: events, snapshots/state and
 * cluster messages. It is bound to {@link KryoSerializer} in this module's {@code reference.conf}
 * ({@code pekko.actor.serialization-bindings}); Java serialization is off.
 *
 * <p>Implementing the marker is not enough: every concrete class that ends up in the bytes (the
 * message itself and the records, enums and classes nested in it) must be registered with a
 * stable id under {@code flotilla.serialization.kryo.classes} in the owning module's
 * {@code reference.conf}. See {@link KryoSerializer} for the id ranges.
 */
public interface FlotillaSerializable {}
