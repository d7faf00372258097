"""Deterministic generator for ``corpus.txt``, the text the offline tokenizer is trained on.

The corpus is synthetic English prose written from templates and word lists in this file: narrative, product
reviews, ``Human: ... Assistant: ...`` dialogues, instructions, news and travel notes, with some accented
words, curly quotes, CJK and emoji so that byte-level BPE learns merges for multi-byte characters too. The
output depends only on this file (``random.Random`` with a fixed seed), so regenerating gives the same bytes;
a test pins that.

Regenerate with ``python -m alignlab.assets._make_corpus`` (writes ``corpus.txt`` next to this file).
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

SEED = 20240521
TARGET_BYTES = 340_000

# --- word lists -------------------------------------------------------------------------------------------

NOUNS = """
account acid actor address adult advice afternoon agency airport alarm album allergy alley anchor angle animal
ankle answer antenna apartment apple apron arch archive area argument arm army arrow article artist attic
audience author autumn avenue award baby backpack bag bakery balcony ball balloon banana band bank barn barrel
basket battery beach beam bean bear beard bed bedroom bee beetle bell belt bench berry bicycle bill bird
birthday biscuit blade blanket block blossom board boat body bone book boot bottle boulder bowl box bracelet
branch bread breakfast brick bridge broom brother bucket budget building bulb bus bush butter button cabin
cabinet cable cake calendar camera camp canal candle canoe canvas canyon cap captain car card carpet carrot
cart castle cat cathedral cave ceiling cellar chain chair chalk champion channel chapter charger cheese chef
cherry chest chicken child chimney chocolate church circle city cliff clock cloud coach coast coat coffee coin
collar college comet committee compass computer concert contract cook cookie corner cottage cotton council
country course cousin cow crab crane crater crayon creek cricket crowd crown cup cupboard curtain cushion
customer cycle dancer daughter day deck deer desert desk detective diamond diary dictionary dinner doctor dog
doll dolphin door dragon drawer dream dress drum duck dust eagle ear earring earth editor egg elbow election
elephant elevator engine engineer envelope eraser evening experiment eye fabric face factory fair falcon
family farm farmer feather fence ferry festival field finger fire fireplace fish flag flame flashlight fleet
floor flower flute fog folder forest fork fountain fox frame friend frog fruit furnace galaxy gallery game
garage garden gate gem ghost giant gift giraffe glacier glass glove goat gold grandmother grape grass guitar
gull hair hall hammer hand harbor hat hawk head heart hedge helmet hill hive hobby holiday honey hook horizon
horse hospital hotel hour house hunter island jacket jar jeans jewel journal journey judge juice jungle kettle
key keyboard kitchen kite kitten knee knife ladder lake lamp lantern laptop lawn lawyer leaf lecture lemon
lens letter librarian library lighthouse lily lion lizard lock locker lodge magazine magnet mailbox manager
map marble market mask meadow meal mechanic medal melody merchant meteor microphone milk mill mineral mirror
mitten monkey month moon morning mosquito mother motor mountain mouse mug museum mushroom musician nail napkin
necklace needle neighbor nest net newspaper night noodle notebook novel nurse nut oak ocean office onion
orange orchard orchestra oven owl ox packet paddle page painter palace pan pancake paper parcel park parrot
passenger path patient pattern peach peak pear pebble pen pencil penguin pepper piano picnic picture pie pig
pigeon pillow pilot pine pipe planet plant plate platform pocket poem poet pond pony pool porch post pot
potato pottery printer prize professor puddle pumpkin puppy puzzle pyramid queen quilt rabbit radio raft
railway rain rainbow ranch receipt recipe refrigerator reporter restaurant ribbon rice river road robot rock
rocket roof room rope rose ruler sail sailor salad sandwich satellite saucer scarf school scientist scissors
screen sculpture season seed shadow shelf shell ship shirt shoe shop shoulder shovel singer sink sister skirt
sky sled slipper snail snake sock sofa soldier song soup spider spoon squirrel stable stadium staircase star
station statue stone storm stove stranger stream street student studio submarine suitcase summer sun sunset
supper swan sweater table tablet tailor teacher teapot telescope temple tent theater thread throne ticket
tiger timber toast toaster tomato tongue tool tooth torch tower town toy tractor trail train tree truck
trumpet tulip tunnel turtle umbrella uncle valley van vase vegetable village violin volcano wagon wall wallet
walrus wardrobe watch waterfall wave whale wheel whistle window wing winter wizard wolf worker workshop yard
yacht zebra
"""

UNCOUNTABLE = """
advice bread butter coffee cotton dust furniture gold honey information luggage milk music news patience rice
sand silver soup sugar tea traffic water weather wisdom wool courage evidence equipment knowledge laughter
"""

ABSTRACT = """
ability absence accuracy adventure agreement ambition anxiety appetite approach attention attitude balance
beauty behavior belief benefit boredom bravery budget calm capacity caution certainty challenge chance change
character charity choice clarity comfort commitment community comparison competition complexity concern
confidence conflict confusion connection consequence courage creativity curiosity danger decision delight
democracy design desire detail development difference difficulty dignity direction discipline discovery
distance diversity duty economy education effort emotion empathy energy enthusiasm environment equality error
evidence excitement experience explanation failure faith fear feeling freedom friendship frustration future
generosity goal gratitude growth guidance habit happiness harmony health history honesty hope hospitality
humor idea identity imagination impact importance improvement independence influence innovation insight
inspiration integrity intelligence intention interest intuition joy justice kindness knowledge language
leadership learning liberty logic loyalty luck memory mercy method mistake moment motivation mystery nature
necessity opinion opportunity optimism patience peace perspective philosophy pleasure policy possibility
poverty power practice preference pressure pride priority privacy problem progress promise prosperity purpose
quality question reason relief reputation research respect responsibility risk routine safety satisfaction
science security silence simplicity skill solution strategy strength stress success sympathy talent technology
tension theory thought tradition trust truth uncertainty understanding unity value victory violence vision
warmth wealth wisdom wonder
"""

IRREGULAR_PLURALS = {
    "child": "children",
    "mouse": "mice",
    "ox": "oxen",
    "tooth": "teeth",
    "knife": "knives",
    "leaf": "leaves",
    "wolf": "wolves",
    "shelf": "shelves",
    "potato": "potatoes",
    "tomato": "tomatoes",
    "hero": "heroes",
    "volcano": "volcanoes",
    "deer": "deer",
    "fish": "fish",
    "scissors": "scissors",
    "jeans": "jeans",
    "cactus": "cacti",
    "person": "people",
    "woman": "women",
    "man": "men",
    "goose": "geese",
    "foot": "feet",
}

# (base, past, past participle); regular verbs give only the base.
VERBS = """
accept admire adopt allow announce answer appear arrange arrive ask attach attend avoid bake balance borrow
bounce brush calculate call carry celebrate change check chew clean clear climb close collect comb compare
complain complete connect consider cook copy count cover crack crawl cross cycle dance decide decorate deliver
describe design destroy develop discover dress drift drop dry earn enjoy enter escape examine explain explore
fail fasten fetch fill finish fix float flow follow fold gather glow grab greet guard guess hammer hand hang
harvest help hope hover hug hunt hurry identify ignore imagine improve include inform inspect introduce invent
invite iron jog join joke jump kick knock label land laugh launch learn lift like listen load locate look love
manage mark measure melt mend mention miss mix move name notice observe obtain offer open order organize
overlook pack paddle paint park pass pause perform pick plan plant play polish pour practice praise prepare
present preserve press pretend print produce promise protect pull pump punch push question race rain reach
receive recommend record recycle reduce relax remember remind remove repair repeat replace reply report
request rescue return review roll rush sail save scatter scream search select serve share shiver shop sign
signal sketch slip smile sniff solve sort spark spill sprinkle squeeze stack start stay step stir stop store
stretch study suggest supply support surprise switch talk taste thank tidy touch tour trace trade train travel
treat trust try turn twist unlock unpack use visit vote wait walk wander want warn wash watch wave weigh
whisper wink wish wonder work worry wrap yawn
"""

IRREGULAR_VERBS = """
begin:began:begun bite:bit:bitten blow:blew:blown break:broke:broken bring:brought:brought build:built:built
buy:bought:bought catch:caught:caught choose:chose:chosen come:came:come dig:dug:dug draw:drew:drawn
drink:drank:drunk drive:drove:driven eat:ate:eaten fall:fell:fallen feed:fed:fed feel:felt:felt
find:found:found fly:flew:flown forget:forgot:forgotten freeze:froze:frozen give:gave:given go:went:gone
grow:grew:grown hide:hid:hidden hold:held:held keep:kept:kept know:knew:known lead:led:led leave:left:left
lend:lent:lent lose:lost:lost make:made:made meet:met:met pay:paid:paid ride:rode:ridden ring:rang:rung
rise:rose:risen run:ran:run say:said:said see:saw:seen sell:sold:sold send:sent:sent shake:shook:shaken
shine:shone:shone sing:sang:sung sink:sank:sunk sit:sat:sat sleep:slept:slept speak:spoke:spoken
spend:spent:spent stand:stood:stood steal:stole:stolen swim:swam:swum take:took:taken teach:taught:taught
tear:tore:torn tell:told:told think:thought:thought throw:threw:thrown understand:understood:understood
wake:woke:woken wear:wore:worn win:won:won write:wrote:written
"""

ADJECTIVES = """
able absent active afraid ancient angry anxious awkward bare basic beautiful bitter blank bold bored brave
brief bright brilliant broad broken busy calm capable careful careless casual cautious cheap cheerful chilly
clean clever cloudy clumsy cold comfortable common complex confident cool cozy crazy creative crisp crowded
cruel curious cute damp dark dear decent deep delicate delightful dense dirty distant dizzy dull dusty eager
early easy elegant empty endless enormous equal exact excellent excited expensive faint fair faithful familiar
famous fancy fast fierce fine firm flat fluffy foggy foolish fragile free fresh friendly frozen funny gentle
genuine giant glad gloomy glorious golden gorgeous graceful grand grateful great greedy green grumpy guilty
handsome handy happy hard harsh healthy heavy helpful hidden high hollow honest hopeful horrible huge humble
hungry icy ideal idle important impressive innocent intense jolly kind large late lazy light lively lonely
long loose loud lovely low loyal lucky magnificent massive mature mellow messy mild modern modest moist narrow
nasty natural neat nervous new nice noisy normal odd old orange ordinary pale patient peaceful perfect plain
pleasant plenty polite poor popular powerful precious pretty proud pure purple quick quiet rapid rare raw
ready real reliable rich ripe rough round rude rusty sad safe salty scary secret serious shallow sharp shiny
short shy silent silly simple sincere sleepy slim slow small smart smooth soft solid sour spare special spicy
splendid steady steep sticky stiff still strange strict strong stubborn sudden sunny super sweet swift tall
tame tender thick thin thirsty tidy tight tiny tired tough tremendous tricky true ugly unusual upset useful
vague vast vivid warm weak wealthy weary weird wet white wide wild wise witty wonderful wooden worried young
yellow zealous
"""

# Adjectives that read well as product qualities, for reviews.
QUALITY_WORDS = """
sturdy flimsy durable lightweight bulky compact reliable noisy quiet responsive sluggish intuitive confusing
affordable overpriced stylish comfortable ergonomic adjustable waterproof portable rechargeable breathable
versatile accurate consistent flawless disappointing outstanding mediocre adequate generous sensible
"""

COLORS = (
    "red blue green yellow purple orange black white grey silver golden crimson teal amber ivory scarlet navy"
)

ADVERBS = """
quietly quickly slowly carefully gently suddenly eventually finally honestly clearly simply barely nearly
happily sadly bravely calmly eagerly easily warmly softly loudly politely patiently proudly rarely often
seldom always never sometimes usually frequently occasionally immediately gradually recently certainly
probably surely perhaps almost rather quite truly deeply boldly brightly cheerfully curiously firmly fondly
freely gracefully hastily lazily madly neatly nervously openly playfully promptly quietly rapidly roughly
rudely safely secretly sharply silently smoothly steadily sternly strictly swiftly tenderly tightly violently
wearily wildly wisely
"""

FIRST_NAMES = """
Aaron Abigail Adele Ahmed Aiko Alejandro Alice Amara Amelia Ana Andrea Anika Arjun Astrid Aurora Beatrice
Benjamin Bianca Bruno Camille Carlos Chen Chloe Clara Daniel Dmitri Elena Elias Emeka Emma Esther Fatima Felix
Freya Gabriel Grace Hana Hannah Hugo Ibrahim Ines Isaac Isabel Ivan Jack Jamal Javier Jonas Julia Kai Kenji
Laila Lars Leo Lina Lucas Lucía Maya Mateo Mei Mia Miguel Nadia Noah Nora Oliver Olga Omar Oscar Paulo Priya
Quentin Rafael Rania Rosa Ruth Samuel Santiago Sara Sofia Sven Tariq Theo Tomás Ursula Valentina Victor Wei
Yara Yusuf Zara Zoë Renée Björn Søren Anaïs Chloé Maël Łukasz Dvořák Nguyễn
"""

SURNAMES = """
Abbott Alvarez Andersen Baker Bauer Bennett Brooks Castillo Chen Clarke Costa Dubois Evans Fischer Fleming
Garcia Gonzalez Hansen Harris Hoffmann Ibarra Ito Jensen Kaur Kim Kowalski Larsen Lee Lopez Martin Meyer
Moreau Murphy Nakamura Nielsen Novak Okafor Olsen Park Patel Perez Petrov Quinn Ramos Reyes Rossi Santos
Schmidt Silva Singh Suzuki Tanaka Thompson Turner Varga Wagner Walsh Weber Williams Wong Yamamoto Young Zhang
Müller Gómez Núñez
"""

PLACES = """
London Paris Berlin Madrid Lisbon Rome Vienna Prague Dublin Oslo Stockholm Helsinki Copenhagen Amsterdam
Brussels Warsaw Athens Istanbul Cairo Nairobi Lagos Accra Casablanca Mumbai Delhi Bangalore Jakarta Manila
Singapore Bangkok Hanoi Seoul Tokyo Osaka Kyoto Beijing Shanghai Sydney Melbourne Auckland Toronto Vancouver
Montreal Chicago Boston Denver Seattle Austin Portland Miami Lima Bogotá Santiago Quito Havana Mexico Zürich
Genève Kraków Málaga Córdoba Reykjavík Tromsø Göteborg Düsseldorf Köln Besançon Nîmes Orléans Québec Montréal
Curaçao
"""

REGIONS = """
São Paulo|Côte d'Azur|Île-de-France|Río de la Plata|Baden-Württemberg|the Algarve|the Highlands|
Patagonia
"""

FOODS = """
pasta pizza ramen sushi tacos curry risotto paella lasagna dumplings noodles porridge pancakes waffles
omelette stew chowder croissant baguette bagel muffin brownie cheesecake tiramisu gelato sorbet yogurt granola
hummus falafel kebab burrito quesadilla guacamole salsa pesto kimchi tofu tempura miso lentils couscous quinoa
"""

ACCENTED_FOODS = """
crème brûlée|jalapeño|café au lait|crêpes|piña colada|pâté|smörgåsbord|açaí bowl|soufflé|purée|
entrée|flambé|sauté|jamón ibérico|frappé|crudités|fondue|rösti|phở|bánh mì
"""

ACCENTED_WORDS = (
    "café naïve résumé façade déjà vu fiancée cliché protégé rôle coöperate soirée über doppelgänger"
)

PRODUCTS = """
blender|kettle|backpack|desk lamp|office chair|headphones|wireless mouse|mechanical keyboard|water bottle|
running shoes|rain jacket|yoga mat|coffee grinder|air fryer|toaster oven|phone case|USB charger|travel mug|
tent|sleeping bag|hiking boots|e-reader|smartwatch|bluetooth speaker|vacuum cleaner|electric toothbrush|
frying pan|chef's knife|cutting board|bookshelf|standing desk|monitor arm|webcam|tripod|portable fan|
humidifier|space heater|garden hose|cordless drill|bike helmet|umbrella|wallet|suitcase|notebook|fountain pen
"""

EMOJI = "😀 😂 😍 🙂 😢 😡 👍 👎 🎉 ❤️ ⭐ ☕ 🌧️ ☀️ 🌈 🍕 🍜 🚲 📚 🎶 🔥 ✅ ❌ 🤔 🙏"

CJK_PHRASES = """
你好|谢谢|北京|上海|中文|朋友|今天天气很好|我喜欢喝茶|こんにちは|ありがとう|東京|京都|日本語|おいしい| さようなら|안녕하세요|감사합니다|서울|한국어|맛있어요
"""

OTHER_SCRIPTS = "Привет|спасибо|Москва|Γειά σου|ευχαριστώ|Αθήνα|שלום|مرحبا|शुक्रिया|नमस्ते"

TOPICS = """
budgeting|learning a new language|training for a marathon|growing tomatoes|fixing a leaky faucet|writing a
cover letter|planning a road trip|baking sourdough bread|choosing a laptop|sleeping better|reducing
stress|learning to code|caring for a puppy|painting a room|starting a podcast|saving for retirement|making
friends in a new city| studying for an exam|organizing a closet|brewing coffee at home|photographing the night
sky|keeping houseplants alive|preparing for a job interview|learning the guitar|cooking for a crowd|repairing
a bicycle tyre|composting kitchen scraps|writing a short story|teaching a child to swim|negotiating a salary
"""


def _words(block: str) -> list[str]:
    return block.split()


def _phrases(block: str) -> list[str]:
    # Line breaks inside the block are ordinary spaces; "|" separates phrases.
    return [" ".join(p.split()) for p in block.split("|") if p.strip()]


def _plural(noun: str) -> str:
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _double_final(verb: str) -> bool:
    # Consonant-vowel-consonant one-syllable verbs double the final consonant: stop -> stopped.
    return (
        len(verb) <= 4
        and len(verb) >= 3
        and verb[-1] not in "aeiouwxy"
        and verb[-2] in "aeiou"
        and verb[-3] not in "aeiou"
    )


def _verb_forms(base: str) -> dict[str, str]:
    if base.endswith("e"):
        past, ing = base + "d", base[:-1] + "ing"
    elif base.endswith("y") and base[-2] not in "aeiou":
        past, ing = base[:-1] + "ied", base + "ing"
    elif _double_final(base):
        past, ing = base + base[-1] + "ed", base + base[-1] + "ing"
    else:
        past, ing = base + "ed", base + "ing"
    if base.endswith(("s", "x", "z", "ch", "sh", "o")):
        third = base + "es"
    elif base.endswith("y") and base[-2] not in "aeiou":
        third = base[:-1] + "ies"
    else:
        third = base + "s"
    return {"base": base, "past": past, "pp": past, "ing": ing, "third": third}


def _all_verbs() -> list[dict[str, str]]:
    verbs = [_verb_forms(v) for v in _words(VERBS)]
    for entry in _words(IRREGULAR_VERBS):
        base, past, pp = entry.split(":")
        forms = _verb_forms(base)
        forms.update(past=past, pp=pp)
        if base in ("run", "swim", "begin", "sit", "dig", "win"):
            forms["ing"] = base + base[-1] + "ing"
        elif base.endswith("e") and base not in ("see", "flee"):
            forms["ing"] = base[:-1] + "ing"
        elif base == "see":
            forms["ing"] = "seeing"
        if base == "go":
            forms["third"] = "goes"
        elif base == "fly":
            forms["third"] = "flies"
        verbs.append(forms)
    return verbs


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


class _Writer:
    """Draws sentences from templates; every random choice goes through one seeded ``random.Random``."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self._cum: dict[int, tuple[list[str], list[float]]] = {}
        self.nouns = _words(NOUNS)
        self.abstract = _words(ABSTRACT)
        self.uncountable = _words(UNCOUNTABLE)
        self.verbs = _all_verbs()
        self.adjs = _words(ADJECTIVES)
        self.quality = _words(QUALITY_WORDS)
        self.colors = _words(COLORS)
        self.advs = _words(ADVERBS)
        self.first = _words(FIRST_NAMES)
        self.last = _words(SURNAMES)
        self.places = _words(PLACES) + _phrases(REGIONS)
        self.foods = _words(FOODS) + _phrases(ACCENTED_FOODS)
        self.accented = _words(ACCENTED_WORDS)
        self.products = _phrases(PRODUCTS)
        self.emoji = _words(EMOJI)
        self.cjk = _phrases(CJK_PHRASES) + _phrases(OTHER_SCRIPTS)
        self.topics = _phrases(TOPICS)

    # small pieces
    def c(self, seq):
        """Pick from ``seq``: uniform for short lists, Zipf-like (weight 1/(rank+15)) for long word lists, so
        that, as in real text, some words are frequent and many are rare. Ranks come from a fixed shuffle.
        """
        if len(seq) < 20:
            return self.r.choice(seq)
        cached = self._cum.get(id(seq))
        if cached is None or cached[0] is not seq:
            order = list(range(len(seq)))
            random.Random(len(seq)).shuffle(order)
            weights = [0.0] * len(seq)
            for rank, i in enumerate(order):
                weights[i] = 1.0 / (rank + 15)
            cached = (seq, list(itertools.accumulate(weights)))
            self._cum[id(seq)] = cached
        return self.r.choices(seq, cum_weights=cached[1])[0]

    def name(self) -> str:
        return self.c(self.first) if self.r.random() < 0.6 else f"{self.c(self.first)} {self.c(self.last)}"

    def np(self, plural: bool | None = None) -> str:
        noun = self.c(self.nouns)
        plural = self.r.random() < 0.35 if plural is None else plural
        adj = ""
        roll = self.r.random()
        if roll < 0.45:
            adj = self.c(self.adjs) + " "
        elif roll < 0.55:
            adj = self.c(self.colors) + " "
        if plural:
            det = self.c(["the", "some", "two", "several", "those", "her", "his", "our", "many", "a few"])
            return f"{det} {adj}{_plural(noun)}"
        word = adj or noun
        det = self.c(["the", _article(word), "this", "that", "her", "his", "their", "my", "every"])
        return f"{det} {adj}{noun}"

    def verb(self) -> dict[str, str]:
        return self.c(self.verbs)

    def number(self) -> str:
        kind = self.r.random()
        if kind < 0.3:
            return str(self.r.randint(2, 99))
        if kind < 0.5:
            return f"{self.r.randint(100, 9999):,}"
        if kind < 0.7:
            return f"{self.r.randint(1, 500)}.{self.r.randint(0, 99):02d}"
        if kind < 0.85:
            return self.c(
                [
                    "two",
                    "three",
                    "four",
                    "five",
                    "six",
                    "seven",
                    "eight",
                    "nine",
                    "ten",
                    "twelve",
                    "twenty",
                    "a hundred",
                    "a dozen",
                    "half a dozen",
                ]
            )
        return f"{self.r.randint(1, 99)}%"

    def price(self) -> str:
        cur = self.c(["$", "$", "€", "£", "¥"])
        return f"{cur}{self.r.randint(3, 400)}.{self.c(['00', '49', '95', '99'])}"

    def date(self) -> str:
        month = self.c(
            [
                "January",
                "February",
                "March",
                "April",
                "May",
                "June",
                "July",
                "August",
                "September",
                "October",
                "November",
                "December",
            ]
        )
        day, year = self.r.randint(1, 28), self.r.randint(1950, 2030)
        iso = f"{self.r.randint(1990, 2030)}-{self.r.randint(1, 12):02d}-{self.r.randint(1, 28):02d}"
        return self.c([f"{month} {day}", f"{day} {month} {year}", iso])

    # sentences
    def narrative(self) -> str:
        v, v2 = self.verb(), self.verb()
        who = self.name()
        t = self.r.randrange(12)
        if t == 0:
            return f"{who} {v['past']} {self.np()} {self.c(self.advs)} and {v2['past']} {self.np()}."
        if t == 1:
            return (
                f"Before the {self.c(self.nouns)} {self.c(['closed', 'opened', 'arrived', 'left'])}, "
                f"{who} had {v['pp']} {self.np()} near {self.np()}."
            )
        if t == 2:
            return (
                f"In {self.c(self.places)}, {self.np(True)} were {v['ing']} {self.c(self.advs)} while "
                f"{who} watched from {self.np(False)}."
            )
        if t == 3:
            return (
                f"“{self.c(['Why', 'How', 'When', 'Where'])} did you {v['base']} {self.np()}?” "
                f"{who} asked, {self.c(self.advs)}."
            )
        if t == 4:
            adj = self.c(self.adjs)
            when = self.c(["morning", "evening", "night", "afternoon", "day"])
            return (
                f"It was {_article(adj)} {adj} {when} in {self.c(self.places)}, and the "
                f"{_plural(self.c(self.nouns))} smelled of {self.c(self.foods)}."
            )
        if t == 5:
            return (
                f"Nobody {self.c(['expected', 'remembered', 'noticed', 'believed'])} that {who} would "
                f"{v['base']} {self.np()} with such {self.c(self.abstract)}."
            )
        if t == 6:
            return (
                f"{who.split()[0]}’s {self.c(self.nouns)} was {self.c(self.adjs)}, "
                f"{self.c(self.adjs)} and {self.c(['strangely', 'oddly', 'surprisingly', 'rather'])} "
                f"{self.c(self.adjs)}."
            )
        if t == 7:
            return (
                f"After {self.number()} {self.c(['days', 'weeks', 'years', 'hours', 'minutes'])}, "
                f"the {self.c(self.nouns)} finally {v['past']} {self.np()}…"
            )
        if t == 8:
            return (
                f"{who} {self.c(['said', 'whispered', 'shouted', 'muttered', 'replied'])}: “I "
                f"{self.c(['never', 'always', 'sometimes', 'rarely'])} {v['base']} {self.np(True)} — "
                f"not since {self.c(self.places)}.”"
            )
        if t == 9:
            return (
                f"The {self.c(self.nouns)} {self.c(['stood', 'lay', 'waited', 'rested'])} beside "
                f"{self.np()}, {self.c(self.adjs)} under the {self.c(self.colors)} sky."
            )
        if t == 10:
            return (
                f"{self.c(['Some', 'Most', 'Few', 'Many'])} {_plural(self.c(self.nouns))} "
                f"{v['base']} {self.np(True)} when the {self.c(self.nouns)} is {self.c(self.adjs)}."
            )
        return (
            f"Her {self.c(self.abstract)} was {self.c(['matched', 'tested', 'rewarded', 'shaken'])} only "
            f"by his {self.c(self.abstract)}; together they {v['past']} {self.np()} "
            f"{self.c(self.advs)}."
        )

    def review(self) -> str:
        p = self.c(self.products)
        q, q2 = self.c(self.quality), self.c(self.quality)
        stars = self.r.randint(1, 5)
        t = self.r.randrange(10)
        if t == 0:
            return f"{stars} out of 5 stars. This {p} is {q} and {q2}, exactly as described."
        if t == 1:
            return (
                f"I bought the {p} for {self.price()} and it "
                f"{self.c(['broke', 'stopped working', 'cracked'])} "
                f"after {self.number()} {self.c(['days', 'weeks', 'uses'])}. Would not recommend. "
                f"{self.c(['👎', '😡', '😢', ''])}"
            ).rstrip()
        if t == 2:
            return (
                f"Great {p}! {self.c(['Arrived', 'Shipped', 'Delivered'])} "
                f"{self.c(['early', 'on time', 'fast'])}"
                f", feels {q}, and my "
                f"{self.c(['wife', 'husband', 'son', 'daughter', 'roommate', 'partner'])} "
                f"loves it. {self.c(self.emoji)}"
            )
        if t == 3:
            return (
                f"Pros: {q}, {q2}, {self.c(self.quality)}. Cons: a bit {self.c(self.quality)} and the "
                f"{self.c(['manual', 'packaging', 'cable', 'lid', 'strap', 'button'])} is "
                f"{self.c(self.adjs)}."
            )
        if t == 4:
            return (
                f"Honestly, for the price this {p} is "
                f"{self.c(['hard to beat', 'fine', 'a steal', 'a ripoff'])}. "
                f"I’ve used it every day since {self.date()}."
            )
        if t == 5:
            return f"Update after {self.number()} months: still {q}. Rating: {'★' * stars}{'☆' * (5 - stars)}"
        if t == 6:
            return (
                f"The {p} looks {self.c(['nice', 'cheap', 'premium', 'stylish'])} in {self.c(self.colors)}, "
                f"but it’s {q} and the {self.c(['battery', 'handle', 'zipper', 'motor', 'screen'])} "
                f"{self.c(['died', 'wobbles', 'squeaks', 'overheats', 'works perfectly'])}."
            )
        if t == 7:
            return (
                f"Returned it. The {p} was {self.c(['too small', 'too big', 'the wrong colour', 'damaged'])} "
                f"and customer service was {self.c(['helpful', 'useless', 'slow', 'friendly'])}."
            )
        if t == 8:
            return (
                f"“{self.c(['Best', 'Worst', 'Most useful', 'Most overrated'])} {p} I have ever owned,” "
                f"says {self.name()} from {self.c(self.places)}."
            )
        return (
            f"Compared with my old {p}, this one is {self.c(['far', 'slightly', 'much', 'a little'])} more "
            f"{q} — {stars}/5."
        )

    def dialogue(self) -> str:
        topic = self.c(self.topics)
        food, place = self.c(self.foods), self.c(self.places)
        t = self.r.randrange(8)
        if t == 0:
            human = f"Can you give me {self.number()} tips for {topic}?"
            assistant = (
                f"Sure. First, {self.c(self.verbs)['base']} {self.np()} {self.c(self.advs)}. Second, "
                f"keep {self.np()} nearby. Finally, be {self.c(self.adjs)} with yourself."
            )
        elif t == 1:
            human = f"What's a good recipe with {food}?"
            assistant = (
                f"Try {food} with {self.c(self.foods)}: {self.c(['simmer', 'bake', 'fry', 'toss'])} "
                f"everything for {self.r.randint(5, 45)} minutes and serve it {self.c(self.adjs)}."
            )
        elif t == 2:
            when = self.c(["week", "month", "spring", "summer"])
            human = f"I'm visiting {place} next {when}. What should I see?"
            assistant = (
                f"In {place}, visit the old {self.c(self.nouns)}, walk along the {self.c(self.nouns)}, "
                f"and try the local {food}."
            )
        elif t == 3:
            human = f"How do I say “thank you” in {self.c(['Chinese', 'Japanese', 'Korean'])}?"
            assistant = (
                f"You can say “{self.c(['谢谢', 'ありがとう', '감사합니다'])}”. People will appreciate "
                f"the {self.c(self.abstract)}."
            )
        elif t == 4:
            human = f"Write a one-line poem about {self.np()}."
            assistant = (
                f"{self.c(self.adjs).capitalize()} {self.c(self.nouns)}, {self.c(self.adjs)} "
                f"{self.c(self.nouns)}, {self.c(self.verbs)['ing']} toward the {self.c(self.nouns)}."
            )
        elif t == 5:
            human = f"Is it safe to {self.c(self.verbs)['base']} {self.np()} at night?"
            assistant = (
                f"It depends on the {self.c(self.abstract)} involved. If in doubt, ask "
                f"{self.c(['a doctor', 'a local guide', 'an expert', 'a friend'])} first."
            )
        elif t == 6:
            human = f"Summarize the main idea of {self.c(self.abstract)} in one sentence."
            assistant = (
                f"It is about {self.c(self.abstract)} and {self.c(self.abstract)}, and why "
                f"{self.c(self.abstract)} matters."
            )
        else:
            x, y = self.r.randint(2, 99), self.r.randint(2, 99)
            human = f"What is {x} times {y}?"
            assistant = f"{x} × {y} = {x * y}."
        extra = ""
        if self.r.random() < 0.3:
            extra = (
                f"\n\nHuman: {self.c(['Thanks!', 'Great, thank you.', 'Can you explain more?', 'Why?'])}"
                f"\n\nAssistant: {self.c(['You are welcome!', 'Happy to help.', 'Of course.'])} "
                f"{self.c(self.emoji)}"
            )
        return f"\n\nHuman: {human}\n\nAssistant: {assistant}{extra}"

    def instructions(self) -> str:
        topic = self.c(self.topics)
        steps = []
        for i in range(self.r.randint(3, 6)):
            v = self.verb()
            steps.append(f"{i + 1}. {v['base'].capitalize()} {self.np()} {self.c(self.advs)}.")
        return f"How to approach {topic}:\n" + "\n".join(steps)

    def news(self) -> str:
        t = self.r.randrange(5)
        city = self.c(self.places)
        if t == 0:
            return (
                f"{city.upper()}, {self.date()} — Officials {self.c(['announced', 'denied', 'confirmed'])} "
                "on "
                f"{self.c(['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday'])} that the new "
                f"{self.c(self.nouns)} will cost {self.price()} million."
            )
        if t == 1:
            return (
                f"The {self.c(['council', 'committee', 'university', 'museum', 'company'])} in {city} "
                "reported "
                f"a {self.number()} rise in {self.c(self.abstract)} last "
                f"{self.c(['year', 'quarter', 'month'])}."
            )
        if t == 2:
            return (
                f"Researchers led by Dr. {self.c(self.last)} found that {self.c(self.nouns)} populations "
                f"depend on {self.c(self.abstract)} more than expected."
            )
        if t == 3:
            return (
                f"Temperatures in {city} reached {self.r.randint(-20, 42)}°C, and {self.number()} residents "
                f"{self.c(['cheered', 'complained', 'stayed indoors', 'went to the beach'])}."
            )
        return (
            f"{self.name()}, {self.r.randint(19, 88)}, won the {self.c(self.nouns)} prize for a novel about "
            f"{self.c(self.abstract)} and {self.c(self.abstract)}."
        )

    def travel(self) -> str:
        t = self.r.randrange(6)
        if t == 0:
            return (
                f"We had {self.c(self.foods)} at a tiny {self.c(['café', 'bistro', 'brasserie', 'izakaya'])} "
                "in "
                f"{self.c(self.places)} — the owner greeted us with “{self.c(self.cjk)}”."
            )
        if t == 1:
            return (
                f"The {self.c(['façade', 'château', 'plaza', 'piazza', 'cathédrale'])} in "
                f"{self.c(self.places)} was {self.c(self.adjs)}; a sign read “{self.c(self.cjk)}”."
            )
        if t == 2:
            return (
                f"Our {self.c(['naïve', 'clever', 'tired', 'cheerful'])} guide, {self.name()}, recommended "
                f"the {self.c(self.foods)} and a walk to the {self.c(self.nouns)} {self.c(self.emoji)}"
            )
        if t == 3:
            return (
                f"Notes: {self.c(self.cjk)} / {self.c(self.cjk)} — {self.c(self.accented)}, "
                f"{self.c(self.accented)}, {self.c(self.foods)}."
            )
        if t == 4:
            return (
                f"Train from {self.c(self.places)} to {self.c(self.places)}: {self.r.randint(1, 9)}h "
                f"{self.r.randint(0, 59):02d}m, {self.price()} one way."
            )
        return (
            f"I still think about that {self.c(self.adjs)} {self.c(self.foods)} in {self.c(self.places)}. "
            f"{self.c(self.emoji)}{self.c(self.emoji)}"
        )

    def essay(self) -> str:
        """Opinion prose dense in function words, the most frequent tokens of real English."""
        a, b = self.c(self.abstract), self.c(self.abstract)
        v = self.verb()
        adj, adv = self.c(self.adjs), self.c(self.advs)
        elder = self.c(["mother", "father", "grandmother", "teacher", "uncle", "neighbor"])
        more = self.c(["more", "less", "just as"])
        templates = (
            (
                f"I think that {a} is {more} important than {b}, because it is what people {v['base']} "
                "when they have nothing else."
            ),
            f"If you want to {v['base']} {self.np()}, you should not fear {a}; it will come with time.",
            f"There is no reason why {self.np()} could not be {adj}, but most of us would rather have {b}.",
            (
                f"What matters most is not {a} itself but how we {v['base']} it, and whether we are willing "
                "to change."
            ),
            (
                f"Some people believe that {a} and {b} go together, while others say that one always comes "
                "at the cost of the other."
            ),
            (
                f"When I was young, my {elder} used to tell me that {a} is something you have to {v['base']} "
                "every day."
            ),
            f"It is easy to forget how much {a} we need, and how little {b} we actually have.",
            (
                f"Of course, this does not mean that {self.np(True)} are always {adj}. It only means that we "
                f"should think about them more {adv}."
            ),
            f"We often hear that {a} is the key to {b}. That may be true, but it is only part of the story.",
            (
                f"Why do so many people {v['base']} {self.np(True)}? Perhaps because they have never been "
                "asked to do anything else."
            ),
            (
                f"In my experience, the best way to learn about {a} is to {v['base']} {self.np()} and see "
                "what happens next."
            ),
            (
                f"They had been {v['ing']} {self.np(True)} for years before anyone asked what it was for, "
                "and by then it was too late."
            ),
            (
                f"This is why {a} should be taught in every school, and why it should be {v['pp']} by "
                "everyone who can."
            ),
            (
                f"Neither {a} nor {b} can be bought, but both can be lost, which is something we should all "
                "remember."
            ),
        )
        return self.c(templates)

    def paragraph(self) -> str:
        kind = self.r.choices(
            ["narrative", "essay", "review", "dialogue", "instructions", "news", "travel"],
            weights=[26, 18, 18, 16, 6, 8, 8],
        )[0]
        if kind == "dialogue":
            return self.dialogue().strip()
        if kind == "instructions":
            return self.instructions()
        n = self.r.randint(2, 6)
        return " ".join(getattr(self, kind)() for _ in range(n))


def make_corpus(seed: int = SEED, target_bytes: int = TARGET_BYTES) -> str:
    """Return the corpus text: paragraphs separated by blank lines, about ``target_bytes`` UTF-8 bytes."""
    writer = _Writer(seed)
    parts: list[str] = []
    size = 0
    while size < target_bytes:
        para = writer.paragraph()
        parts.append(para)
        size += len(para.encode("utf-8")) + 2
    return "\n\n".join(parts) + "\n"


def main() -> None:
    """Write ``corpus.txt`` next to this file."""
    out = Path(__file__).with_name("corpus.txt")
    out.write_bytes(make_corpus().encode("utf-8"))
    print(f"wrote {out.name}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
