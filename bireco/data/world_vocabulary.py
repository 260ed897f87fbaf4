"""The synthetic world's vocabulary: name syllables, and per attribute its values, document sentences, questions
and keyword queries (the templates `bireco.data.synthetic` renders rows from)."""

from __future__ import annotations

import re

ONSETS = ("b", "br", "d", "dr", "f", "g", "h", "k", "kl", "l", "m", "n", "p", "r", "s", "st", "t", "th", "v", "z")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "ou", "ia")
CODAS = ("n", "r", "l", "s", "m", "th", "sk", "nd", "x", "rn")
OPTIONAL_ATTRS = ("instrument", "pet")

# Per attribute, "|"-separated: values; doc sentences ({s} subject, {ps} possessive, {v} value, {av} value with
# article); questions and keyword queries ({n} full name, {p} profession used as a descriptor).
RAW_ATTRS: dict[str, tuple[str, str, str, str]] = {
    "profession": (
        "architect|baker|cartographer|chemist|dentist|electrician|engineer|florist|geologist|historian|illustrator|"
        "journalist|librarian|locksmith|nurse|pharmacist|photographer|pilot|potter|surveyor|tailor|translator|"
        "veterinarian|watchmaker",
        "{s} works as {av}.|{s} is {av} by trade.|By profession, {s} is {av}.|{s} earns a living as {av}.",
        "What does {n} do for a living?|What is the occupation of {n}?|What job does {n} have?|"
        "Which trade does {n} practise?",
        "{n} job title occupation|{n} profession career trade|what {n} does for work",
    ),
    "city": (
        "Brackenford|Dunmarrow|Eastwyn|Fallowgate|Glenhaven|Harrowick|Ironmere|Kestrelton|Larkspur|Mossbridge|"
        "Northfold|Oakhollow|Pinecrest|Quillmere|Ravenscar|Saltmarsh|Thornbury|Umberlee|Varenholt|Yarrowby|Zephyrdale",
        "{s} lives in {v}.|{s} has made a home in the town of {v}.|{ps} hometown is {v}.|"
        "These days {s} resides in {v}.|{s} moved to {v} and never left.",
        "Where does {n} live?|Which city is home to the {p} {n}?|What is the hometown of {n}?|"
        "In which town does {n} reside?|Where is {n} based these days?",
        "{n} home city residence|{p} {n} hometown|where {n} lives now",
    ),
    "year": (
        "|".join(str(year) for year in range(1950, 2005)),
        "{s} was born in {v}.|{s} came into the world in {v}.|{ps} year of birth is {v}.|"
        "Records show {s} was born in {v}.",
        "When was {n} born?|In what year was the {p} {n} born?|What is the birth year of {n}?|"
        "Which year did {n} come into the world?",
        "{n} birth year born|{p} {n} year of birth|{n} date of birth year",
    ),
    "employer": (
        "Brightwell Labs|Copperfield Logistics|Dovetail Studios|Everglow Energy|Foxglove Press|Granite Peak Bank|"
        "Harbourline Shipping|Ironbark Construction|Juniper Health|Kingfisher Airways|Lanternworks|Meadowlark Foods|"
        "Nightjar Software|Orchard Mutual|Pebblestone Museum|Quarry Hill School|Riverbend Hospital|"
        "Silverleaf Hotels|Tidewater Observatory|Willowmere Library",
        "{s} is employed by {v}.|{s} works at {v}.|{ps} employer is {v}.|{s} joined {v} some years ago.",
        "Who employs {n}?|Which company does {n} work for?|Where is the {p} {n} employed?|"
        "Which organisation pays the salary of {n}?",
        "{n} employer company name|{p} {n} workplace organisation|who {n} works for",
    ),
    "colour": (
        "amber|crimson|teal|ochre|violet|scarlet|emerald|indigo|saffron|turquoise|magenta|maroon|olive|silver|"
        "charcoal|coral",
        "{ps} favourite colour is {v}.|{s} loves anything painted {v}.|{s} always wears something {v}.|"
        "Friends know that {s} adores the colour {v}.",
        "What is the favourite colour of {n}?|Which colour does {n} like best?|What colour does the {p} {n} prefer?",
        "{n} favourite colour preference|{p} {n} favorite color",
    ),
    "instrument": (
        "accordion|bassoon|cello|clarinet|banjo|harp|harmonica|mandolin|oboe|piano|trombone|trumpet|ukulele|viola|"
        "xylophone|flute",
        "{s} plays the {v}.|In the evenings, {s} practises the {v}.|Since childhood, {s} has played the {v}.|"
        "{ps} instrument of choice is the {v}.",
        "Which instrument does {n} play?|What musical instrument does the {p} {n} practise?|"
        "Does {n} play any instrument, and which one?",
        "{n} musical instrument played|{p} {n} instrument",
    ),
    "pet": (
        "parrot|tortoise|ferret|iguana|hedgehog|rabbit|goldfish|beagle|tabby cat|chinchilla|gecko|canary|hamster|"
        "corgi|axolotl|cockatoo",
        "{s} keeps {av} as a pet.|{s} shares the house with {av}.|{ps} pet is {av}.|{s} adopted {av} last spring.",
        "What kind of pet does {n} have?|Which animal lives with the {p} {n}?|What species is the pet of {n}?",
        "{n} pet animal species|{p} {n} pet",
    ),
}
ATTRS: dict[str, dict[str, tuple[str, ...]]] = {
    attr: {
        key: tuple(part.split("|")) for key, part in zip(("values", "doc", "question", "keyword"), parts, strict=True)
    }
    for attr, parts in RAW_ATTRS.items()
}
# Words the templates and vocabularies use; generated names avoid them so name matching stays unambiguous.
RESERVED = {
    w.lower() for spec in ATTRS.values() for texts in spec.values() for t in texts for w in re.findall(r"\w+", t)
}
