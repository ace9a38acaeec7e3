"""A grammar of on-device voice commands (timers, alarms, calls, messages, dates, media, ...).

Sentences are spoken forms, already normalised ("wake me up at seven thirty a m"). Generation is
deterministic given a `numpy.random.Generator`; `command_sentences(seed, n)` returns `n` distinct
sentences (the grammar holds far more than 10**6 sentences).
"""

from __future__ import annotations

import numpy as np

from tf_todm.data.text import normalize_text, number_to_words, ordinal_to_words

NAMES = ("maria", "john", "anna", "david", "sarah", "michael", "emma", "james", "olivia", "daniel",
         "sophia", "peter", "laura", "kevin", "lucy", "thomas", "grace", "robert", "chloe", "william",
         "mia", "henry", "zoe", "oliver", "amelia", "jack", "ella", "samuel", "hannah", "george",
         "isabel", "ben", "nina", "leo", "alice", "max", "rosa", "omar", "fatima", "raj", "priya",
         "chen", "wei", "yuki", "kenji", "carlos", "lucia", "ahmed", "aisha", "ivan", "olga", "pierre",
         "claire", "hans", "greta", "mom", "dad", "grandma", "grandpa", "the office", "my sister",
         "my brother", "the doctor")

MONTHS = ("january february march april may june july august september october november "
          "december").split()
WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
CITIES = ("london", "paris", "berlin", "tokyo", "new york", "chicago", "madrid", "rome", "sydney",
          "toronto", "boston", "seattle", "dublin", "lisbon", "oslo", "cairo", "mumbai", "delhi", "seoul",
          "lima", "denver", "austin", "miami", "vienna")
ARTISTS = ("the beatles", "mozart", "taylor swift", "miles davis", "queen", "adele", "bach",
           "the rolling stones", "bob marley", "nina simone", "coldplay", "daft punk", "abba",
           "johnny cash", "beyonce", "radiohead", "elvis", "chopin", "madonna", "prince")
GENRES = ("jazz", "rock", "classical music", "hip hop", "country music", "reggae", "blues",
          "pop music", "lo fi beats", "piano music", "the news", "a podcast", "rain sounds",
          "relaxing music", "workout music", "folk songs")
TASKS = ("buy milk", "call the bank", "water the plants", "take my medicine", "pick up the kids",
         "pay the rent", "book a table", "send the report", "feed the cat", "walk the dog",
         "renew my passport", "charge my phone", "check the oven", "go to the gym",
         "return the library books", "buy a birthday present", "clean the kitchen",
         "email my teacher", "move the car", "take out the trash", "back up my laptop",
         "order more coffee", "cancel the meeting", "bring an umbrella")
MESSAGES = ("i am running late", "i will be there in ten minutes", "see you soon", "on my way",
            "call me back when you can", "happy birthday", "thanks for dinner", "where are you",
            "can you pick me up", "the meeting moved to three", "i love you", "good night",
            "don't forget the keys", "i'm at the station", "let's meet at the cafe",
            "are you free tomorrow", "i just landed", "dinner is ready", "running ten minutes behind",
            "please call the office")
APPS = ("camera", "calendar", "maps", "settings", "the browser", "messages", "the calculator",
        "notes", "the music app", "my email", "the clock", "photos", "the weather app")
DEVICES = ("the lights", "the living room lights", "the kitchen lights", "the fan", "the heater",
           "the tv", "the radio", "bluetooth", "wi fi", "the flashlight", "do not disturb",
           "airplane mode", "the bedroom lamp", "the coffee machine")
UNITS = ("seconds", "minutes", "hours")
POLITE_PREFIX = ("", "", "", "please ", "hey phone ", "okay ", "okay phone ")
POLITE_SUFFIX = ("", "", "", "", " please", " now", " thanks")


def _choice(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def spoken_time(hour: int, minute: int, twelve_hour: bool = True) -> str:
    """Clock time as people say it: (7, 30) -> "seven thirty a m", (12, 5) -> "twelve oh five p m"."""
    suffix = ""
    h = hour
    if twelve_hour:
        suffix = " a m" if hour < 12 else " p m"
        h = hour % 12 or 12
    if minute == 0:
        return number_to_words(h) + (suffix or " o'clock")
    if minute < 10:
        return f"{number_to_words(h)} oh {number_to_words(minute)}{suffix}"
    return f"{number_to_words(h)} {number_to_words(minute)}{suffix}"


def _time_phrase(rng) -> str:
    hour, minute = int(rng.integers(0, 24)), int(_choice(rng, (0, 0, 5, 10, 15, 20, 30, 30, 40, 45, 50, 55,
                                                                int(rng.integers(60)))))
    kind = int(rng.integers(6))
    h12 = hour % 12 or 12
    if kind == 0 and minute == 30:
        return f"half past {number_to_words(h12)}"
    if kind == 1 and minute == 15:
        return f"quarter past {number_to_words(h12)}"
    if kind == 2 and minute == 45:
        return f"quarter to {number_to_words(h12 % 12 + 1)}"
    if kind == 3:
        return f"{spoken_time(hour, minute, twelve_hour=False)}" if minute else f"{number_to_words(h12)} o'clock"
    if kind == 4 and minute == 0:
        return f"{number_to_words(h12)} in the {'morning' if hour < 12 else ('afternoon' if hour < 18 else 'evening')}"
    return spoken_time(hour, minute)


def _duration_phrase(rng) -> str:
    unit = _choice(rng, UNITS)
    upper = {"seconds": 90, "minutes": 120, "hours": 12}[unit]
    n = int(rng.integers(1, upper + 1))
    kind = int(rng.integers(5))
    if kind == 0 and unit != "seconds":
        return f"{number_to_words(n)} and a half {unit}"
    if kind == 1 and unit == "hours":
        return f"{number_to_words(n)} {'hour' if n == 1 else 'hours'} and {number_to_words(int(rng.integers(1, 60)))} minutes"
    if n == 1:
        return {"seconds": "one second", "minutes": "one minute", "hours": "an hour"}[unit]
    return f"{number_to_words(n)} {unit}"


def _date_phrase(rng) -> str:
    kind = int(rng.integers(5))
    month = _choice(rng, MONTHS)
    day = int(rng.integers(1, 29))
    if kind == 0:
        return f"on {month} {ordinal_to_words(day)}"
    if kind == 1:
        return f"on the {ordinal_to_words(day)} of {month}"
    if kind == 2:
        return f"on {_choice(rng, WEEKDAYS)}"
    if kind == 3:
        return _choice(rng, ("tomorrow", "tonight", "this evening", "next week", "tomorrow morning",
                             "the day after tomorrow", "this weekend", "next month"))
    return f"next {_choice(rng, WEEKDAYS)}"


def _phone_number(rng) -> str:
    return " ".join(number_to_words(int(d)) for d in rng.integers(0, 10, size=int(_choice(rng, (3, 4, 7, 10)))))


def _timer(rng):
    d = _duration_phrase(rng)
    return _choice(rng, (f"set a timer for {d}", f"start a {d} timer", f"timer {d}",
                         f"count down from {d}", f"set a {_choice(rng, ('pasta', 'tea', 'cooking', 'laundry', 'workout'))} timer for {d}",
                         f"add {d} to the timer", f"how much time is left on the timer",
                         f"cancel the {d} timer"))


def _alarm(rng):
    t = _time_phrase(rng)
    return _choice(rng, (f"wake me up at {t}", f"set an alarm for {t}", f"set an alarm for {t} {_date_phrase(rng)}",
                         f"alarm at {t}", f"change my alarm to {t}", f"delete the alarm at {t}",
                         f"wake me up {_date_phrase(rng)} at {t}", f"snooze for {_duration_phrase(rng)}",
                         f"set a daily alarm for {t}"))


def _call(rng):
    n = _choice(rng, NAMES)
    return _choice(rng, (f"call {n}", f"call {n} on speaker", f"video call {n}", f"call {n} at work",
                         f"dial {_phone_number(rng)}", f"call {n} on their mobile", f"hang up",
                         f"redial the last number", f"call back {n}", f"facetime {n}"))


def _message(rng):
    n, m = _choice(rng, NAMES), _choice(rng, MESSAGES)
    return _choice(rng, (f"text {n} {m}", f"send a message to {n} saying {m}", f"tell {n} {m}",
                         f"message {n} {m}", f"reply to {n} {m}", f"read my messages from {n}",
                         f"send {n} a text that says {m}", f"email {n} {m}"))


def _reminder(rng):
    t, d = _choice(rng, TASKS), _date_phrase(rng)
    return _choice(rng, (f"remind me {d} to {t}", f"remind me to {t} at {_time_phrase(rng)}",
                         f"remind me in {_duration_phrase(rng)} to {t}", f"add {t} to my to do list",
                         f"remind me {d} at {_time_phrase(rng)} to {t}", f"don't let me forget to {t}",
                         f"schedule a meeting with {_choice(rng, NAMES)} {d} at {_time_phrase(rng)}",
                         f"what is on my calendar {d}"))


def _weather(rng):
    c, d = _choice(rng, CITIES), _choice(rng, ("today", "tomorrow", "this weekend", "tonight", f"on {_choice(rng, WEEKDAYS)}", "right now"))
    return _choice(rng, (f"what's the weather in {c}", f"what's the weather {d}", f"will it rain {d}",
                         f"will it rain in {c} {d}", f"how cold is it in {c}", f"do i need an umbrella {d}",
                         f"what's the temperature in {c}", f"is it going to snow {d}",
                         f"how windy is it in {c} {d}"))


def _media(rng):
    a, g = _choice(rng, ARTISTS), _choice(rng, GENRES)
    return _choice(rng, (f"play {a}", f"play some {g}", f"play {g} by {a}", f"shuffle songs by {a}",
                         "pause the music", "skip this song", "next track", "play the previous song",
                         f"play my {_choice(rng, ('morning', 'running', 'study', 'party', 'sleep'))} playlist",
                         f"who sings this song", f"play {a} on the {_choice(rng, ('kitchen', 'bedroom', 'living room'))} speaker",
                         f"resume {g}", "stop playing", f"add this song to my {g} playlist"))


def _volume(rng):
    n = int(rng.integers(0, 11))
    return _choice(rng, (f"set the volume to {number_to_words(n)}", "turn the volume up", "turn it down",
                         f"volume {number_to_words(n * 10)} percent", "mute", "unmute the phone",
                         f"increase the volume by {number_to_words(n)}", "make it louder", "a bit quieter",
                         f"set brightness to {number_to_words(n * 10)} percent"))


def _device(rng):
    dev = _choice(rng, DEVICES)
    return _choice(rng, (f"turn on {dev}", f"turn off {dev}", f"switch off {dev} at {_time_phrase(rng)}",
                         f"dim {dev} to {number_to_words(int(rng.integers(1, 10)) * 10)} percent", f"is {dev} on",
                         f"set the thermostat to {number_to_words(int(rng.integers(16, 30)))} degrees",
                         f"open {_choice(rng, APPS)}", f"close {_choice(rng, APPS)}", "take a selfie",
                         f"take a photo in {number_to_words(int(rng.integers(2, 11)))} seconds",
                         "how much battery do i have left", "turn on battery saver"))


def _numbers(rng):
    a, b = int(rng.integers(0, 1000)), int(rng.integers(1, 100))
    op = _choice(rng, (("plus", "plus"), ("minus", "minus"), ("times", "times"), ("divided by", "divided by")))
    return _choice(rng, (f"what is {number_to_words(a)} {op[0]} {number_to_words(b)}",
                         f"what's {number_to_words(b)} percent of {number_to_words(a)}",
                         f"convert {number_to_words(b)} {_choice(rng, ('miles', 'pounds', 'inches', 'degrees fahrenheit', 'cups', 'dollars'))} to "
                         f"{_choice(rng, ('kilometers', 'kilograms', 'centimeters', 'celsius', 'liters', 'euros'))}",
                         f"what's the square root of {number_to_words(a)}",
                         f"tip {number_to_words(b)} percent on {number_to_words(a)} dollars",
                         f"flip a coin", f"roll a {number_to_words(int(_choice(rng, (6, 8, 10, 12, 20))))} sided die",
                         f"pick a number between one and {number_to_words(int(rng.integers(2, 1001)))}"))


def _navigation(rng):
    c = _choice(rng, CITIES)
    place = _choice(rng, ("home", "work", "the nearest gas station", "the airport", "the train station",
                          "a coffee shop", "the closest pharmacy", "the hospital", "the supermarket",
                          f"{number_to_words(int(rng.integers(1, 400)))} {_choice(rng, ('main', 'oak', 'park', 'elm', 'king', 'high'))} street"))
    return _choice(rng, (f"navigate to {place}", f"directions to {place}", f"how long will it take to get to {place}",
                         f"how far is {c}", f"find {place} near me", f"what time is it in {c}",
                         f"share my location with {_choice(rng, NAMES)}", f"take me {'home' if rng.random() < 0.5 else 'to work'}",
                         f"what time does the next train to {c} leave"))


_CATEGORIES = ((_timer, 3), (_alarm, 3), (_call, 2), (_message, 3), (_reminder, 3), (_weather, 2),
               (_media, 2), (_volume, 1), (_device, 2), (_numbers, 2), (_navigation, 2))
_CATEGORY_P = np.array([w for _, w in _CATEGORIES], dtype=np.float64)
_CATEGORY_P /= _CATEGORY_P.sum()


def sample_command(rng: np.random.Generator) -> str:
    """One random command, normalised (lower-case a-z, apostrophes, single spaces)."""
    make = _CATEGORIES[int(rng.choice(len(_CATEGORIES), p=_CATEGORY_P))][0]
    sentence = f"{_choice(rng, POLITE_PREFIX)}{make(rng)}{_choice(rng, POLITE_SUFFIX)}"
    return normalize_text(sentence)


def command_sentences(seed: int, num_sentences: int, max_attempts_factor: int = 50) -> list[str]:
    """`num_sentences` distinct commands, deterministic in `seed`, in generation order."""
    rng = np.random.default_rng(seed)
    seen, sentences = set(), []
    for _ in range(num_sentences * max_attempts_factor):
        if len(sentences) == num_sentences:
            break
        s = sample_command(rng)
        if s not in seen:
            seen.add(s)
            sentences.append(s)
    if len(sentences) < num_sentences:
        raise ValueError(f"command grammar produced only {len(sentences)} distinct sentences; asked for {num_sentences}")
    return sentences
