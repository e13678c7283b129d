package dev.flotilla.persistence.kryo;

import com.esotericsoftware.kryo.Kryo;
import com.esotericsoftware.kryo.KryoException;
import com.esotericsoftware.kryo.Serializer;
import com.esotericsoftware.kryo.io.Input;
import com.esotericsoftware.kryo.io.Output;
import java.lang.reflect.Constructor;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.RecordComponent;
import java.util.HashMap;
import java.util.Map;

/**
 * Tagged, evolution-safe format for Java records.
 *
 * <p>Bytes: {@code varint count}, then per component {@code string name, int length, value} where
 * value is Kryo's class-id-and-object. On read, components are matched by name: unknown ones are
 * skipped by length, missing ones are passed to the canonical constructor as null / 0 / false.
 * So a record may gain components (give them a default by normalising null in the compact
 * constructor) and may drop them; renaming a component is a drop plus an add. Order of components
 * may change freely. A component's type may widen between numeric primitives (int to long, ...).
 */
final class RecordSerializer<T> extends Serializer<T> {
  private final Class<T> type;
  private final String[] names;
  private final Class<?>[] types;
  private final Method[] accessors;
  private final Constructor<T> constructor;
  private final Map<String, Integer> index = new HashMap<>();

  RecordSerializer(Class<T> type) {
    if (!type.isRecord()) {
      throw new IllegalArgumentException(type.getName() + " is not a record");
    }
    this.type = type;
    RecordComponent[] components = type.getRecordComponents();
    names = new String[components.length];
    types = new Class<?>[components.length];
    accessors = new Method[components.length];
    for (int i = 0; i < components.length; i++) {
      names[i] = components[i].getName();
      types[i] = components[i].getType();
      accessors[i] = components[i].getAccessor();
      accessors[i].setAccessible(true);
      index.put(names[i], i);
    }
    try {
      constructor = type.getDeclaredConstructor(types);
      constructor.setAccessible(true);
    } catch (NoSuchMethodException e) {
      throw new IllegalStateException("record without canonical constructor? " + type.getName(), e);
    }
    setImmutable(true);
  }

  @Override
  public void write(Kryo kryo, Output output, T record) {
    output.writeVarInt(names.length, true);
    for (int i = 0; i < names.length; i++) {
      output.writeString(names[i]);
      Object value;
      try {
        value = accessors[i].invoke(record);
      } catch (IllegalAccessException | InvocationTargetException e) {
        throw new KryoException("cannot read component " + names[i] + " of " + type.getName(), e);
      }
      writeLengthPrefixed(kryo, output, value);
    }
  }

  /** Writes {@code int length + value}; the length lets readers skip components they do not know. */
  private static void writeLengthPrefixed(Kryo kryo, Output output, Object value) {
    if (output.getOutputStream() == null) {
      // In-memory buffer (the normal case): reserve the length, write in place, patch it.
      int lengthAt = output.position();
      output.writeInt(0);
      int start = output.position();
      kryo.writeClassAndObject(output, value);
      int end = output.position();
      output.setPosition(lengthAt);
      output.writeInt(end - start);
      output.setPosition(end);
    } else {
      // Streaming output (e.g. inside a chunked CompatibleFieldSerializer): buffer the value.
      Output scratch = new Output(64, -1);
      kryo.writeClassAndObject(scratch, value);
      output.writeInt(scratch.position());
      output.writeBytes(scratch.getBuffer(), 0, scratch.position());
    }
  }

  @Override
  public T read(Kryo kryo, Input input, Class<? extends T> ignored) {
    Object[] args = new Object[names.length];
    int count = input.readVarInt(true);
    for (int n = 0; n < count; n++) {
      String name = input.readString();
      int length = input.readInt();
      Integer i = index.get(name);
      if (i == null) {
        input.skip(length); // written by a newer or older shape that had this component
        continue;
      }
      args[i] = adapt(kryo.readClassAndObject(input), i);
    }
    for (int i = 0; i < args.length; i++) {
      if (args[i] == null && types[i].isPrimitive()) {
        args[i] = zero(types[i]);
      }
    }
    try {
      return constructor.newInstance(args);
    } catch (InvocationTargetException e) {
      throw new KryoException(
          "constructor of " + type.getName() + " rejected the stored values: " + e.getCause(),
          e.getCause());
    } catch (ReflectiveOperationException e) {
      throw new KryoException("cannot construct " + type.getName(), e);
    }
  }

  private Object adapt(Object value, int i) {
    Class<?> target = types[i];
    if (value == null) {
      return null;
    }
    Class<?> boxed = target.isPrimitive() ? box(target) : target;
    if (boxed.isInstance(value)) {
      return value;
    }
    if (value instanceof Number number && Number.class.isAssignableFrom(boxed)) {
      Object widened = widen(number, boxed);
      if (widened != null) {
        return widened;
      }
    }
    throw new KryoException(
        "Stored value of component '"
            + names[i]
            + "' of "
            + type.getName()
            + " is a "
            + value.getClass().getName()
            + " but the component is now a "
            + target.getName()
            + ". Stored events are forever: keep the old component type and add a new component"
            + " (or a new event type) instead.");
  }

  private static Object widen(Number n, Class<?> target) {
    boolean integral = n instanceof Byte || n instanceof Short || n instanceof Integer || n instanceof Long;
    if (target == Long.class && integral) {
      return n.longValue();
    }
    if (target == Integer.class && (n instanceof Byte || n instanceof Short)) {
      return n.intValue();
    }
    if (target == Double.class && (integral || n instanceof Float)) {
      return n.doubleValue();
    }
    return null;
  }

  private static Class<?> box(Class<?> primitive) {
    if (primitive == int.class) return Integer.class;
    if (primitive == long.class) return Long.class;
    if (primitive == boolean.class) return Boolean.class;
    if (primitive == double.class) return Double.class;
    if (primitive == float.class) return Float.class;
    if (primitive == short.class) return Short.class;
    if (primitive == byte.class) return Byte.class;
    if (primitive == char.class) return Character.class;
    return primitive;
  }

  private static Object zero(Class<?> primitive) {
    if (primitive == boolean.class) return false;
    if (primitive == char.class) return '\0';
    if (primitive == long.class) return 0L;
    if (primitive == double.class) return 0d;
    if (primitive == float.class) return 0f;
    if (primitive == short.class) return (short) 0;
    if (primitive == byte.class) return (byte) 0;
    return 0;
  }
}
