# ruff: noqa: E501  (the dialogue lines are data; they stay one sentence per line)
"""Compose the bundled sample dialogues (support_dialogues.jsonl) from hand-written parts.

Every line below was written for this project. A dialogue is one topic's opener, the listener's
first answer, one follow-up with the answers written for it, and a closing exchange; slots
(city, relative, subject, persona details) vary the wording. Run again after editing the parts:

    python -m training.data.compose
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

OUT = Path(__file__).with_name("support_dialogues.jsonl")
DIALOGUES_PER_TOPIC = 70
SEED = 20240301

CITIES = [
    "Kharkiv",
    "Zaporizhzhia",
    "Mykolaiv",
    "Kherson",
    "Dnipro",
    "Odesa",
    "Sumy",
    "Kyiv",
    "Chernihiv",
    "Kramatorsk",
]
RELATIVES = [
    "mother",
    "father",
    "brother",
    "sister",
    "grandmother",
    "grandfather",
    "husband",
    "wife",
    "son",
    "daughter",
]
SUBJECTS = ["maths", "chemistry", "history", "biology", "physics", "English", "law", "economics"]
PETS = ["cat", "dog"]


@dataclass(frozen=True)
class Persona:
    name: str
    hobby: str
    hobby_detail: str
    pet: str


PERSONAS = [
    Persona("Sana", "baking bread", "the kitchen smells wonderful on Sunday mornings", "a grey cat called Pepper"),
    Persona("Ivo", "walking in the park", "I try to go every evening, even in the rain", "an old dog called Bruno"),
    Persona(
        "Mira",
        "reading detective novels",
        "I always try to guess the ending before the last chapter",
        "a cat who sleeps on my books",
    ),
    Persona("Tom", "playing the guitar", "I only know a few songs, but they calm me down", "a lazy ginger cat"),
    Persona(
        "Lena", "growing tomatoes on my balcony", "this year they finally turned red", "a little dog called Button"
    ),
    Persona("Ari", "drawing with pencils", "mostly birds and old houses", "a cat called Plum"),
]


# How the listener describes their role; a persona takes one or two of these.
ROLE_LINES = [
    "I am a volunteer listener on a support line.",
    "I am a calm and patient listener.",
    "I care about how people feel and I never judge.",
    "I ask gentle questions and let people take their time.",
    "I am a kind friend who likes to check in on people.",
    "I help people feel steady when things are overwhelming.",
    "I speak slowly and simply.",
    "I like mint tea and quiet evenings.",
]


def persona_lines(p: Persona, rng: random.Random, grounded: bool) -> list[str]:
    """One to five lines in a random order and case, so the model finds the user's words
    wherever the persona ends; `grounded` keeps the hobby and pet lines an answer refers to."""
    details = [f"I enjoy {p.hobby}.", f"I have {p.pet}."]
    optional = [f"My name is {p.name}."] + ([] if grounded else details)
    lines = rng.sample(ROLE_LINES, rng.randint(1, 2)) + (details if grounded else [])
    lines += rng.sample(optional, rng.randint(0, min(len(optional), 5 - len(lines))))
    rng.shuffle(lines)
    return [line.lower() for line in lines] if rng.random() < 0.4 else lines


# A topic: openers (user), first answers (listener, fit every opener), follow-ups each with the
# answers written for it (optionally only after the given opener and first-answer indices), and
# closings (user thanks, listener's warm goodbye).
TOPICS: dict[str, dict] = {
    "shelling": dict(
        openers=[
            "The shelling near {city} went on all night and I could not sleep.",
            "There were explosions again close to our house in {city}.",
            "The sirens in {city} went off five times last night.",
            "We spent the whole night in the basement again because of the shelling.",
            "I am shaking. Something exploded very close to our building an hour ago.",
            "Every night in {city} I lie awake waiting for the next explosion.",
            "I could not sleep again, the explosions did not stop until morning.",
            "Our windows shook all night from the shelling.",
        ],
        answers=[
            "That sounds terrifying. Are you somewhere safe right now?",
            "I am so sorry you went through another night like that. Are you and your family safe?",
            "Nights like that are frightening and exhausting. How are you feeling right now?",
            "I am really glad you wrote to me. Is everyone with you unhurt?",
            "That is so much fear to live through. Where are you at this moment?",
        ],
        follow=[
            (
                "We are safe for now, but I am so tired.",
                [
                    "Being that tired after so much fear makes sense. Is there a moment today when you could rest a little?",
                    "Your body has been on alert all night, no wonder you are exhausted. Could you lie down for a while today?",
                ],
            ),
            (
                "Yes, we are in the corridor with the neighbours.",
                [
                    "I am glad you are not alone there. How are the people around you holding up?",
                    "It is good that you have company. Is there anything that helps you pass the time while you wait?",
                ],
            ),
            (
                "My hands are still shaking and I cannot calm down.",
                [
                    "That is your body reacting to real danger, it is not a weakness. Would it help to breathe slowly with me for a minute?",
                    "It is completely natural to feel shaky after that. Try to breathe out slowly, a little longer than you breathe in. Is anyone near you?",
                ],
            ),
            (
                "I keep thinking the next one will hit our building.",
                [
                    "That fear is so heavy to carry, especially at night. What usually helps you feel even a little bit steadier?",
                    "Of course your mind goes there after what you heard. You do not have to carry that thought alone. Who could you talk to today?",
                ],
            ),
            (
                "My {relative} refuses to go down to the shelter.",
                [
                    "That must be so hard, worrying about them as well as yourself. Have you been able to talk about it calmly together?",
                    "It is painful when someone we love will not do what would keep them safer. How do you feel when they say no?",
                ],
            ),
        ],
    ),
    "displacement": dict(
        openers=[
            "We had to leave {city} last week and now we live in a dormitory.",
            "I left my home in {city} with one bag and I still cannot believe it.",
            "We moved to another town because of the war and I feel like a stranger here.",
            "Our house in {city} is gone. We are staying with friends now.",
            "It has been three months since we fled {city} and I still dream about home.",
            "We are refugees now. I never thought I would say that.",
        ],
        answers=[
            "Leaving home like that is a huge loss. How are you settling in where you are now?",
            "I am so sorry. Losing your home turns everything upside down. How are you coping these days?",
            "That is so much change in such a short time. What has been the hardest part so far?",
            "I can only imagine how strange everything feels. Are you somewhere you can rest properly?",
        ],
        follow=[
            (
                "Everything is unfamiliar and I do not know anyone here.",
                [
                    "Being surrounded by strangers can feel very lonely. Is there one small place here that feels a bit more like yours?",
                    "It takes time for a new place to feel less foreign. Have you met anyone, even briefly, who was kind to you?",
                ],
            ),
            (
                "I miss my own kitchen, my street, even my noisy neighbours.",
                [
                    "Those small everyday things are what makes a place home. What do you miss the most about your street?",
                    "It makes so much sense to miss them. Home is made of all those little things. Do you keep in touch with any of your neighbours?",
                ],
            ),
            (
                "My children keep asking when we will go back.",
                [
                    "That is such a hard question to hear, especially when you do not know the answer. How are the children doing otherwise?",
                    "It is heartbreaking when we cannot give our children the answer they want. What do you tell them?",
                ],
            ),
            (
                "I feel guilty that I left and others stayed.",
                [
                    "Many people who leave feel that, but keeping yourself and your family safe is not something to be ashamed of. Who did you leave behind?",
                    "That guilt shows how much you care about the people there. You made the best choice you could. Are you able to talk to them?",
                ],
            ),
        ],
    ),
    "family_fear": dict(
        openers=[
            "My {relative} is still in {city} and I have not heard from them since yesterday.",
            "I cannot stop worrying about my {relative}, they are near the front line.",
            "My {relative} was called up to the army and I am scared all the time.",
            "The phone lines to {city} are down and my {relative} is there.",
            "I am so scared for my {relative}. They are still in {city}.",
        ],
        answers=[
            "Not knowing is one of the hardest things. When did you last speak with them?",
            "That worry must be with you every minute. How are you holding up while you wait?",
            "I am so sorry, that is a frightening place to be. Is there anyone you can wait for news with?",
            "It makes complete sense that you are scared. What do you know so far?",
        ],
        follow=[
            (
                "We spoke two days ago, they said they were fine.",
                [
                    "So at least you know they were fine two days ago. Connections often go down for a while. Is there someone else nearby who could check on them?",
                    "That last call is something to hold on to. How are you taking care of yourself while you wait?",
                ],
            ),
            (
                "I check my phone every minute and I cannot focus on anything.",
                [
                    "Of course you do, your mind is with them. Could you ask a friend to sit with you for a while today?",
                    "Waiting like that is exhausting. Maybe put the phone on loud and step away for a few minutes. Would that feel possible?",
                ],
            ),
            (
                "I keep imagining the worst.",
                [
                    "When we are afraid for someone we love, our mind goes to the darkest places. Those pictures are fear, not facts. Who else is waiting for news with you?",
                    "That is such a painful place to be. Right now you do not know that anything bad has happened. What helps you get through the hours?",
                ],
            ),
        ],
    ),
    "grief": dict(
        openers=[
            "My {relative} died last month and I still cannot believe it.",
            "Today is a year since my {relative} passed away.",
            "I lost my {relative} in the war and everyone expects me to just carry on.",
            "My old {pet} died yesterday. I know it sounds silly but I am heartbroken.",
            "We buried my {relative} on Friday.",
            "I miss my {relative} so much. They died last week.",
        ],
        answers=[
            "I am so sorry for your loss. What was your {relative} like?",
            "I am so sorry. Grief has no timetable. How have you been getting through the days?",
            "That is a terrible loss, and it is not silly at all to feel heartbroken. Would you like to tell me about them?",
            "I am deeply sorry. Is there someone close to you who you can share this with?",
        ],
        follow=[
            (
                "They were the kindest person I knew. They always made soup when I was sick.",
                [
                    "What a caring person. Those small acts of love stay with us. Do you have a memory of them that you hold on to?",
                    "It sounds like they looked after you in such a warm way. It is no wonder you miss them so much.",
                ],
                {0, 1, 2, 4, 5},
            ),
            (
                "Some days I am fine, and then suddenly I cry in the shop.",
                [
                    "That is how grief often moves, in waves that come without warning. It does not mean you are doing anything wrong. Are you being gentle with yourself?",
                    "Grief can catch us in the most ordinary places. There is nothing wrong with crying. Who do you talk to about them?",
                ],
            ),
            (
                "I did not get to say goodbye.",
                [
                    "That is so painful. Not having a goodbye can leave so much unsaid. If you could tell them something now, what would it be?",
                    "I am so sorry you did not have that chance. Some people write a letter to the person they lost. Do you think that might help you?",
                ],
                {0, 2, 4, 5},
            ),
            (
                "People keep telling me it will get easier.",
                [
                    "They probably mean well, but it can feel like they are rushing you. It is okay that it is still hard. How do you feel today?",
                    "It can be hard to hear that when the pain is so fresh. You get to grieve at your own pace. What has been the hardest moment this week?",
                ],
            ),
        ],
    ),
    "loneliness": dict(
        openers=[
            "I feel so lonely lately. Nobody really calls me.",
            "Most evenings I do not speak to a single person.",
            "All my friends moved abroad and I feel completely alone.",
            "I live alone and the weekends feel endless.",
            "Sometimes I feel invisible, like nobody would notice if I was gone for a week.",
            "I feel so alone in the evenings.",
        ],
        answers=[
            "I am really glad you reached out. Loneliness can be so heavy. How long have you been feeling this way?",
            "That sounds very isolating. I am here and I am listening. What are your evenings usually like?",
            "Feeling alone like that is hard, and you deserve company and care. Is there anyone you used to be close to?",
            "Thank you for telling me. I am here and I am listening. What has been happening lately?",
        ],
        follow=[
            (
                "A few months. Since I changed jobs I do not see anyone.",
                [
                    "That is a big change, and losing daily contact with people hurts. Is there anyone from your old job you liked talking to?",
                    "It makes sense that it feels empty after such a change. What kind of people do you enjoy spending time with?",
                ],
                None,
                {0, 3},
            ),
            (
                "I just sit at home and scroll on my phone.",
                [
                    "Evenings like that can make the loneliness feel even bigger. Is there something you used to enjoy doing with other people?",
                    "That is understandable, it is an easy place to end up. Would a short walk outside feel possible tomorrow?",
                ],
            ),
            (
                "I do not want to bother anyone with my problems.",
                [
                    "Reaching out is not a bother, people who care about you often want to hear from you. Is there one person you could send a short message to?",
                    "I hear that. But you are not a burden. You wrote to me today, and I am really glad you did. Who do you miss talking to?",
                ],
            ),
        ],
    ),
    "anxiety": dict(
        openers=[
            "My heart is racing and I do not know why.",
            "I have been anxious all week and I cannot switch my thoughts off.",
            "I had a panic attack on the bus this morning.",
            "Every small thing makes me worried lately.",
            "I cannot stop reading the news and it makes me so anxious.",
        ],
        answers=[
            "That sounds really unpleasant. I am here with you. Can you tell me what is around you right now?",
            "Anxiety like that is exhausting. When did you start feeling this way?",
            "I am sorry, that must have been frightening. How are you feeling now?",
            "Thank you for telling me. Let us slow down together. What is on your mind the most?",
        ],
        follow=[
            (
                "I am at home, on the sofa.",
                [
                    "Good, you are somewhere familiar. Try pressing your feet into the floor and breathing out slowly. Can you name three things you can see?",
                    "That is a safe place to be. Let us take a slow breath together, in for four and out for six. How does your body feel now?",
                ],
                {0, 2},
                {0},
            ),
            (
                "It started when the news about {city} came out.",
                [
                    "It makes sense that the news shook you. It is okay to take a break from it for a while. Do you have people in {city}?",
                    "News like that can keep our minds on high alert. Would it help to put the phone away for an hour and do something calm?",
                ],
                {1, 3, 4},
                {1, 3},
            ),
            (
                "I am scared it will happen again.",
                [
                    "That fear is very common after a panic attack. It was awful, but it did pass, and it will pass again if it comes. What helped you last time?",
                    "Of course you are worried about that. Some people find it helps to have a small plan, like slow breathing or holding something cold. Would you like to try that?",
                ],
                {2},
            ),
            (
                "I feel a bit calmer now, talking helps.",
                [
                    "I am really glad to hear that. You did well to reach out. What would be a gentle thing to do for yourself this evening?",
                    "That is good to hear. Talking can take some of the weight off. Is there anything else on your mind?",
                ],
            ),
        ],
    ),
    "exams": dict(
        openers=[
            "My {subject} exam is tomorrow and I feel like I know nothing.",
            "I have three exams next week and I cannot sleep from stress.",
            "I failed my {subject} test and I am afraid to tell my parents.",
            "My mind goes blank every time I try to study {subject}.",
            "Everyone else seems ready for the exams except me.",
            "I am so stressed about my exams, I cannot sleep.",
        ],
        answers=[
            "Exam stress can feel overwhelming. You probably know more than you think. How have you been preparing?",
            "That is a lot of pressure. Have you been able to rest at all between studying?",
            "I am sorry, that sounds really stressful. What worries you the most about it?",
            "It is so common to feel that way before exams. What subject feels the hardest right now?",
        ],
        follow=[
            (
                "I have been studying for days but nothing stays in my head.",
                [
                    "When we are very tired, memory gets worse, not better. Short breaks and some sleep can really help. When did you last take a proper break?",
                    "That sounds exhausting. Maybe try going over just one topic at a time, slowly. Which part do you feel most unsure about?",
                ],
            ),
            (
                "My parents will be so disappointed in me.",
                [
                    "It is hard to carry that fear. One test does not define you, and parents often understand more than we expect. How do you usually talk with them?",
                    "I understand why you are worried. A failed test is something you can recover from. Is there someone who could help you prepare for the retake?",
                ],
            ),
            (
                "I think I will just give up.",
                [
                    "It sounds like you are really worn out. Before deciding anything, maybe rest tonight and look at it again tomorrow. What would make tomorrow a little easier?",
                    "That feeling makes sense when you are this stressed. You do not have to decide now. Is there a teacher or a friend you could ask for help?",
                ],
            ),
        ],
    ),
    "hopeless": dict(
        openers=[
            "Sometimes I feel like there is no point in anything anymore.",
            "I am so tired of everything. I do not know how much longer I can go on like this.",
            "Everything feels dark lately and I cannot see a way out.",
            "I feel like a burden to everyone around me.",
        ],
        answers=[
            "I am really glad you told me. It sounds like you are carrying so much. Are you having thoughts of hurting yourself?",
            "Thank you for trusting me with this. That sounds incredibly painful. Are you safe right now?",
            "I am here and I am listening. When you say that, are you thinking about ending your life?",
        ],
        follow=[
            (
                "No, I would not do anything. I am just exhausted.",
                [
                    "Thank you for telling me honestly. Feeling that exhausted is serious too, and you deserve support. Is there someone you trust who you could be with today?",
                    "I am glad you are safe. Being this tired for so long is hard. What has been draining you the most?",
                ],
            ),
            (
                "Sometimes I do think about it.",
                [
                    "Thank you for being honest with me, that took courage. You deserve support right now from someone who can be with you. Could you call a crisis line or someone you trust today?",
                    "I am really glad you said it out loud. You do not have to go through this alone. Please reach out to a crisis line or a person near you now. Would you like help finding a number?",
                ],
            ),
            (
                "I do not know. I just feel empty.",
                [
                    "Feeling empty like that is very hard. I am here with you. Have you been able to talk to anyone close to you about it?",
                    "That emptiness sounds so heavy. You reached out today, and that matters. Is there a doctor or someone you trust you could talk to this week?",
                ],
            ),
        ],
    ),
    "everyday": dict(
        openers=[
            "Hi, I just wanted to talk to someone today.",
            "Hello! It finally stopped raining here.",
            "I made a big pot of soup today and it actually turned out well.",
            "What do you like to do in your free time?",
            "Do you have any pets?",
            "I had a pretty good day for once.",
        ],
        answers={
            "Hi, I just wanted to talk to someone today.": [
                "Hi, I am glad you wrote. How has your day been so far?",
                "Hello, I am here. What would you like to talk about?",
            ],
            "Hello! It finally stopped raining here.": [
                "That is lovely news. Are you going to get outside for a while?",
                "Oh good, a bit of dry weather can lift the mood. What will you do today?",
            ],
            "I made a big pot of soup today and it actually turned out well.": [
                "That sounds delicious, well done! What kind of soup did you make?",
                "Nothing beats homemade soup. Who are you going to share it with?",
            ],
            "What do you like to do in your free time?": [
                "I love {hobby}, {hobby_detail}. What about you?",
                "Mostly {hobby}. It helps me slow down. What do you enjoy?",
            ],
            "Do you have any pets?": [
                "Yes, I have {pet}. They keep me company in the evenings. Do you have any?",
                "I do, {pet}. Do you like animals?",
            ],
            "I had a pretty good day for once.": [
                "That is so nice to hear! What made it good?",
                "I love hearing that. What happened today?",
            ],
        },
        follow=[
            (
                "I went for a walk and met an old friend.",
                [
                    "What a lovely surprise. How long had it been since you last saw them?",
                    "That sounds like a really nice moment. Did you get to talk for a while?",
                ],
                {0, 1, 5},
            ),
            (
                "I like cooking, and sometimes I draw.",
                [
                    "That is a wonderful mix. What do you like to cook the most?",
                    "Both of those are so calming. What did you draw most recently?",
                ],
                {3},
            ),
            (
                "Not much, I mostly stayed at home and rested.",
                [
                    "Rest is important too, especially after hard weeks. Did you do anything nice for yourself?",
                    "Sometimes a quiet day is exactly what we need. How are you feeling this evening?",
                ],
                {0, 1},
            ),
            (
                "I had a {pet} when I was a child. I still miss it.",
                [
                    "Pets become part of the family, so it makes sense that you still miss it. What was its name?",
                    "That is sweet that you still think about it. What do you remember most about it?",
                ],
                {4},
            ),
            (
                "My neighbour. She is old and lives alone, so I brought her some.",
                [
                    "That is such a kind thing to do. I bet it meant a lot to her. Do you often look in on her?",
                    "How thoughtful of you. Sharing food is a lovely way to care for someone. How is she doing?",
                ],
                {2},
                {1},
            ),
            (
                "Yes, I think I will go to the market.",
                [
                    "That sounds nice. A little walk and some fresh air can do a lot. What will you buy?",
                    "Enjoy it! Is there something special you want to get?",
                ],
                {1},
            ),
            (
                "Mushroom soup, my grandmother's recipe.",
                [
                    "Oh, that sounds wonderful. Recipes from grandmothers always taste of home. Do you cook often?",
                    "What a lovely way to remember her. Did she teach you how to make it?",
                ],
                {2},
                {0},
            ),
        ],
    ),
}

CLOSINGS = [
    (
        "Thank you for listening.",
        [
            "You are very welcome. I am glad you wrote to me. I am here whenever you want to talk.",
            "Thank you for sharing this with me. Take care of yourself, and come back any time.",
        ],
    ),
    (
        "It helps a bit to talk about it.",
        [
            "I am glad it helps a little. You do not have to carry this alone.",
            "I am really glad. You can write to me again whenever you need to.",
        ],
    ),
    (
        "I think I will try to rest now.",
        [
            "That sounds like a good idea. Be gentle with yourself tonight.",
            "Rest well. I hope tomorrow feels a little lighter.",
        ],
    ),
]


def _follow_ups(parts: dict, opener: int, answer: int) -> list[tuple[str, list[str]]]:
    """The follow-ups that read naturally after this opener and answer (entries may name which)."""
    fitting = []
    for text, answers, *only in parts["follow"]:
        openers, after = (only + [None, None])[:2]
        if (openers is None or opener in openers) and (after is None or answer in after):
            fitting.append((text, answers))
    return fitting


def _fill(text: str, slots: dict[str, str]) -> str:
    return text.format(**slots)


def compose(rng: random.Random) -> list[dict]:
    dialogues = []
    for topic, parts in TOPICS.items():
        for _ in range(DIALOGUES_PER_TOPIC):
            persona = rng.choice(PERSONAS)
            slots = dict(
                city=rng.choice(CITIES),
                relative=rng.choice(RELATIVES),
                subject=rng.choice(SUBJECTS),
                pet=rng.choice(PETS) if topic != "everyday" else persona.pet,
                hobby=persona.hobby,
                hobby_detail=persona.hobby_detail,
            )
            o = rng.randrange(len(parts["openers"]))
            opener = parts["openers"][o]
            if "{pet}" in opener:
                slots["relative"] = slots["pet"]
            answers = parts["answers"][opener] if isinstance(parts["answers"], dict) else parts["answers"]
            a = rng.randrange(len(answers))
            follow, follow_answers = rng.choice(_follow_ups(parts, o, a))
            turns = [opener, answers[a], follow, rng.choice(follow_answers)]
            if rng.random() < 0.6:
                closing, closing_answers = rng.choice(CLOSINGS)
                turns += [closing, rng.choice(closing_answers)]
            dialogue = {
                "persona": persona_lines(persona, rng, grounded=topic == "everyday"),
                "turns": [_fill(t, slots) for t in turns],
            }
            if dialogue not in dialogues:
                dialogues.append(dialogue)
    rng.shuffle(dialogues)
    return dialogues


def main() -> None:
    dialogues = compose(random.Random(SEED))
    with OUT.open("w", encoding="utf-8") as f:
        for d in dialogues:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    print(f"wrote {len(dialogues)} dialogues to {OUT}")


if __name__ == "__main__":
    main()
