"""What the world's characters say: short everyday lines per language, each under about 1.5 s spoken.

The last `TEST_LINES` of each language are the test split's only: a model is measured on lines it never
heard. Lines are written in the language's own script (Mandarin in Hanzi, Japanese in kana and kanji).
"""

from __future__ import annotations

TEST_LINES = 4

LINES: dict[str, tuple[str, ...]] = {
    "en": (
        "good morning",
        "hello there",
        "thank you",
        "see you soon",
        "how are you",
        "nice to meet you",
        "good night",
        "let us go",
        "I am hungry",
        "it is raining",
        "welcome home",
        "look at this",
        # test split only
        "good morning everyone",
        "where is my hat",
        "have a nice day",
        "the sun is warm",
    ),
    "zh": (
        "你好",
        "早上好",
        "谢谢你",
        "再见",
        "晚安",
        "我很高兴",
        "你好吗",
        "欢迎回家",
        "我们走吧",
        "下雨了",
        "太好了",
        "请坐",
        # test split only
        "大家好",
        "我饿了",
        "明天见",
        "天气很好",
    ),
    "ja": (
        "おはようございます",
        "こんにちは",
        "ありがとう",
        "さようなら",
        "おやすみなさい",
        "はじめまして",
        "いただきます",
        "ただいま",
        "すみません",
        "おいしいです",
        "げんきですか",
        "またね",
        # test split only
        "こんばんは",
        "おかえりなさい",
        "いってきます",
        "よろしくね",
    ),
    "es": (
        "buenos días",
        "hola amigo",
        "muchas gracias",
        "hasta luego",
        "buenas noches",
        "cómo estás",
        "mucho gusto",
        "vamos ya",
        "tengo hambre",
        "está lloviendo",
        "bienvenido a casa",
        "mira esto",
        # test split only
        "hola a todos",
        "dónde está mi gato",
        "qué buen día",
        "hace calor",
    ),
    "fr": (
        "bonjour",
        "merci beaucoup",
        "au revoir",
        "bonne nuit",
        "comment ça va",
        "enchanté",
        "à bientôt",
        "allons-y",
        "j'ai faim",
        "il pleut",
        "bienvenue",
        "regarde ça",
        # test split only
        "bonjour à tous",
        "où est mon chapeau",
        "bonne journée",
        "il fait beau",
    ),
    "de": (
        "guten Morgen",
        "hallo",
        "danke schön",
        "auf Wiedersehen",
        "gute Nacht",
        "wie geht es dir",
        "bis bald",
        "los geht's",
        "ich habe Hunger",
        "es regnet",
        "willkommen",
        "schau mal",
        # test split only
        "hallo zusammen",
        "wo ist mein Hut",
        "schönen Tag",
        "die Sonne scheint",
    ),
    "it": (
        "buongiorno",
        "ciao a tutti",
        "grazie mille",
        "arrivederci",
        "buonanotte",
        "come stai",
        "piacere",
        "andiamo",
        "ho fame",
        "piove",
        "benvenuto",
        "guarda qui",
        # test split only
        "buona giornata",
        "dove sei",
        "che bello",
        "a presto",
    ),
    "pt": (
        "bom dia",
        "olá amigo",
        "muito obrigado",
        "até logo",
        "boa noite",
        "como vai",
        "prazer",
        "vamos lá",
        "estou com fome",
        "está chovendo",
        "bem-vindo",
        "olha isso",
        # test split only
        "olá a todos",
        "onde está o gato",
        "tenha um bom dia",
        "faz sol",
    ),
}


def split_lines(language: str, split: str) -> tuple[str, ...]:
    """The lines a split uses in a language: train has all but the last TEST_LINES, test only those."""
    lines = LINES[language]
    return lines[-TEST_LINES:] if split == "test" else lines[:-TEST_LINES]
